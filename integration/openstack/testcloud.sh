#!/usr/bin/env bash
# OpenStack test cloud for flotilla: real keystone, glance, placement, nova (fake virt driver) and
# neutron (ML2/openvswitch with a registered fake agent) from PyPI, on MariaDB and RabbitMQ from
# Debian, every listener on 127.0.0.1. A data plane (dataplane.py) puts a real SSH host (a node
# container on the test bed's dockerd) at the fixed IP of every ACTIVE server.
#
#   testcloud.sh up       install (cached), configure, init once (pristine snapshot), start, data plane
#   testcloud.sh reset    back to the pristine cloud (DB datadir restored), ~15-25 s
#   testcloud.sh down     stop everything started here, by pid
#   testcloud.sh env      print OS_* variables for the demo project
#
# Env: FLOTILLA_OS_BASE (venv, configs; default /var/tmp/flotilla-os: kept between runs as a cache),
#      FLOTILLA_OS_RUN (DBs, logs, pids; default /dev/shm/flotilla-os: fast resets).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${FLOTILLA_OS_BASE:-/var/tmp/flotilla-os}
RUN=${FLOTILLA_OS_RUN:-/dev/shm/flotilla-os}
VENV=$BASE/venv
ETC=$BASE/etc
LOG=$RUN/log
PRISTINE=$BASE/pristine
PW=secret
H=127.0.0.1
KS_PORT=15000 GLANCE_PORT=19292 PLACEMENT_PORT=18778 NOVA_PORT=18774 NEUTRON_PORT=19696
RABBIT_PORT=15673 RABBIT_DIST_PORT=25673 EPMD_PORT=14369 MYSQL_PORT=13306
COMPUTE_HOST=flotilla-compute-1
APIS="keystone glance placement nova-api neutron"
NOVA_SVCS="nova-conductor nova-scheduler nova-compute"
export PATH=$VENV/bin:$PATH PYTHONWARNINGS=ignore FLOTILLA_FAKE_FAIL_FILE=$RUN/fail-spawns
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/flotilla-testbed/docker.sock}

log() { printf '%s openstack-testcloud: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
t_start=$(date +%s)
since_start() { echo "$(( $(date +%s) - t_start ))s"; }

dburl() { echo "mysql+pymysql://root:$PW@$H:$MYSQL_PORT/$1?charset=utf8mb4"; }

# ------------------------------------------------------------------ install (cached in $BASE)
install() {
  local want; want=$(cat "$HERE/requirements.txt" | sha256sum | cut -c1-16)
  if [ -f "$VENV/.flotilla-installed" ] && [ "$(cat "$VENV/.flotilla-installed")" = "$want" ]; then
    log "python packages already installed ($VENV)"
  else
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install -q uv || die "pip install uv failed"
    local cons=""
    [ -f "$HERE/constraints.txt" ] && cons="-c $HERE/constraints.txt"
    # --compile-bytecode: this environment sets PYTHONDONTWRITEBYTECODE, so without it every
    # service start would compile ~5000 modules again.
    "$VENV/bin/uv" pip install -q --compile-bytecode --python "$VENV/bin/python" $cons -r "$HERE/requirements.txt" \
      || die "installing the OpenStack services failed"
    echo "$want" >"$VENV/.flotilla-installed"
    rm -rf "$PRISTINE"   # a new install invalidates the snapshot
    log "python packages installed in $(since_start)"
  fi
  # The test fakes change more often than the packages: copied on every start, no reinstall.
  cp "$HERE/flotilla_fakes.py" "$VENV"/lib/python3*/site-packages/nova/virt/
  cp "$HERE/flotilla_counter.py" "$HERE/flotilla_nova_api.py" "$VENV"/lib/python3*/site-packages/
}

# ------------------------------------------------------------------ configuration
authtoken() {
  printf 'www_authenticate_uri = http://%s:%s\nauth_url = http://%s:%s\nauth_type = password\nproject_domain_name = Default\nuser_domain_name = Default\nproject_name = service\nusername = %s\npassword = %s\nregion_name = RegionOne\n' \
    $H $KS_PORT $H $KS_PORT "$1" $PW
}

configure() {
  mkdir -p "$ETC"/{keystone,glance,placement,nova,neutron/plugins/ml2,rabbit,mysql}
  mkdir -p "$RUN"/{keystone/fernet-keys,keystone/credential-keys,glance/images,glance/staging,glance/tasks,nova,neutron,lock,rabbit/mnesia,mysql} "$LOG"
  cat >"$ETC/rabbit/rabbitmq.conf" <<EOF
listeners.tcp.default = $H:$RABBIT_PORT
loopback_users = none
log.file.level = warning
EOF
  echo "[]." >"$ETC/rabbit/enabled_plugins"
  cat >"$ETC/mysql/my.cnf" <<EOF
[mysqld]
user = root
datadir = $RUN/mysql
socket = $RUN/mysqld.sock
pid-file = $RUN/mysqld.pid
bind-address = $H
port = $MYSQL_PORT
skip-name-resolve
skip-log-bin
max_connections = 1000
innodb_buffer_pool_size = 256M
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
innodb_flush_method = nosync
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
log-error = $LOG/mysqld.err
[client]
socket = $RUN/mysqld.sock
user = root
password = $PW
EOF
  cat >"$ETC/keystone/keystone.conf" <<EOF
[DEFAULT]
log_file = $LOG/keystone.log
[database]
connection = $(dburl keystone)
[token]
provider = fernet
expiration = 86400
[identity]
# bcrypt cost 4 (test cloud only): a token costs 0.05 s instead of 0.4 s
password_hash_rounds = 4
[fernet_tokens]
key_repository = $RUN/keystone/fernet-keys
[fernet_receipts]
key_repository = $RUN/keystone/fernet-keys
[credential]
key_repository = $RUN/keystone/credential-keys
EOF
  cat >"$ETC/glance/glance-api.conf" <<EOF
[DEFAULT]
log_file = $LOG/glance.log
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $RUN/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $RUN/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $RUN/glance/tasks/
[database]
connection = $(dburl glance)
[paste_deploy]
flavor = keystone
config_file = $VENV/etc/glance/glance-api-paste.ini
[keystone_authtoken]
$(authtoken glance)
[oslo_concurrency]
lock_path = $RUN/lock
EOF
  cat >"$ETC/placement/placement.conf" <<EOF
[DEFAULT]
log_file = $LOG/placement.log
[placement_database]
connection = $(dburl placement)
[api]
auth_strategy = keystone
[keystone_authtoken]
$(authtoken placement)
EOF
  cp "$VENV/etc/nova/api-paste.ini" "$ETC/nova/api-paste.ini"
  cat >"$ETC/nova/nova.conf" <<EOF
[DEFAULT]
log_dir = $LOG
state_path = $RUN/nova
transport_url = rabbit://guest:guest@$H:$RABBIT_PORT/
compute_driver = flotilla_fakes.FlakyFakeDriver
host = $COMPUTE_HOST
my_ip = $H
report_interval = 2
# The fake hypervisor forgets instances when nova-compute restarts: never "sync" power states.
sync_power_state_interval = -1
[api]
auth_strategy = keystone
response_validation = ignore
[wsgi]
api_paste_config = $ETC/nova/api-paste.ini
[api_database]
connection = $(dburl nova_api)
[database]
connection = $(dburl nova)
[keystone_authtoken]
$(authtoken nova)
[service_user]
send_service_user_token = true
$(authtoken nova)
[placement]
$(authtoken placement)
[neutron]
$(authtoken neutron)
[glance]
region_name = RegionOne
[oslo_concurrency]
lock_path = $RUN/lock
[oslo_messaging_notifications]
driver = noop
[conductor]
workers = 1
[scheduler]
workers = 1
[vnc]
enabled = false
[cinder]
os_region_name = RegionOne
EOF
  cp "$VENV/etc/neutron/api-paste.ini" "$ETC/neutron/api-paste.ini"
  cat >"$ETC/neutron/neutron.conf" <<EOF
[DEFAULT]
log_file = $LOG/neutron.log
state_path = $RUN/neutron
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = rabbit://guest:guest@$H:$RABBIT_PORT/
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
# The registered fake OVS agent never heartbeats: keep it alive (largest allowed value).
agent_down_time = 2147483
allow_overlapping_ips = true
[database]
connection = $(dburl neutron)
[keystone_authtoken]
$(authtoken neutron)
[nova]
$(authtoken nova)
[oslo_concurrency]
lock_path = $RUN/lock
[oslo_messaging_notifications]
driver = noop
EOF
  cat >"$ETC/neutron/plugins/ml2/ml2_conf.ini" <<EOF
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1,public
[ml2_type_vxlan]
vni_ranges = 1000:1999
[securitygroup]
enable_security_group = true
firewall_driver = noop
EOF
}

# ------------------------------------------------------------------ processes
pidof_svc() { cat "$RUN/$1.pid" 2>/dev/null; }
# alive and not a zombie (our daemons are re-parented to PID 1, which reaps them slowly)
running() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$st" ] && [ "${st#Z}" = "$st" ]; }
alive() { local p; p=$(pidof_svc "$1") && [ -n "$p" ] && running "$p"; }

start_uwsgi() { # NAME PORT MODULE ENV=VALUE...
  local name=$1 port=$2 module=$3; shift 3
  alive "$name" && return 0
  env "$@" setsid "$VENV/bin/uwsgi" --http11-socket $H:"$port" --module "$module" \
    --master --processes 1 --threads 8 --lazy-apps --need-app --die-on-term --buffer-size 65535 \
    --disable-logging --route-if "exists:$RUN/fault-$name-503 break:503 Service Unavailable" \
    --logto "$LOG/$name-uwsgi.log" --pidfile "$RUN/$name.pid" </dev/null >/dev/null 2>&1 &
  disown $!
}
start_daemon() { # NAME CMD...
  local name=$1; shift
  alive "$name" && return 0
  setsid "$@" </dev/null >"$LOG/$name.out" 2>&1 &
  echo $! >"$RUN/$name.pid"; disown $!
}
rabbit_env() {
  export HOME=$RUN/rabbit RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=$H \
    RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT \
    ERL_EPMD_ADDRESS=$H ERL_EPMD_PORT=$EPMD_PORT \
    RABBITMQ_CONFIG_FILE=$ETC/rabbit/rabbitmq.conf RABBITMQ_MNESIA_BASE=$RUN/rabbit/mnesia \
    RABBITMQ_LOG_BASE=$LOG RABBITMQ_ENABLED_PLUGINS_FILE=$ETC/rabbit/enabled_plugins \
    RABBITMQ_PID_FILE=$RUN/rabbit/rabbit.pid \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}
start_rabbit() {
  ( rabbit_env; cd "$RUN/rabbit" || exit 1
    /usr/lib/rabbitmq/bin/rabbitmqctl -q status >/dev/null 2>&1 && exit 0
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >"$LOG/rabbit.out" 2>&1 &
    echo $! >"$RUN/rabbit.pid" )
}
wait_rabbit() {
  ( rabbit_env; for _ in $(seq 1 120); do
      /usr/lib/rabbitmq/bin/rabbitmqctl -q await_startup >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1 ) \
    || die "rabbitmq did not start, see $LOG/rabbit.out"
}
stop_rabbit() {
  ( rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl -q stop >/dev/null 2>&1; sleep 1
    epmd -port $EPMD_PORT -kill >/dev/null 2>&1 ) || true
  rm -f "$RUN/rabbit.pid"
}
mysql_ping() { mysqladmin --defaults-file="$ETC/mysql/my.cnf" ping >/dev/null 2>&1; }
start_mysql() {
  [ -S "$RUN/mysqld.sock" ] && mysql_ping && return 0
  local fresh=0
  if [ ! -d "$RUN/mysql/mysql" ]; then
    mariadb-install-db --defaults-file="$ETC/mysql/my.cnf" --auth-root-authentication-method=normal \
      --skip-test-db >"$LOG/mysql-install.out" 2>&1 || die "mariadb-install-db failed"
    fresh=1
  fi
  setsid mariadbd --defaults-file="$ETC/mysql/my.cnf" </dev/null >"$LOG/mysqld.out" 2>&1 &
  echo $! >"$RUN/mysql.pid"
  for _ in $(seq 1 150); do
    mysqladmin --defaults-file="$ETC/mysql/my.cnf" --password= ping >/dev/null 2>&1 && break
    mysql_ping && break; sleep 0.2
  done
  if [ $fresh = 1 ]; then
    mysql --defaults-file="$ETC/mysql/my.cnf" --password= -e \
      "ALTER USER 'root'@'localhost' IDENTIFIED BY '$PW'; CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '$PW'; ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '$PW'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" \
      || die "mysql root setup failed"
  fi
}
stop_pid() { # NAME [GRACE_S]
  local p g=${2:-5}; p=$(pidof_svc "$1") || return 0
  [ -n "$p" ] || return 0
  if [ "$g" = 0 ]; then kill -KILL -- -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
  else kill -TERM -- -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; fi
  for _ in $(seq 1 $((g * 10 + 10))); do running "$p" || break; sleep 0.1; done
  running "$p" && { kill -KILL -- -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; }
  rm -f "$RUN/$1.pid"
}
stop_mysql() { stop_pid mysql "${1:-5}"; }

start_apis() {
  start_uwsgi keystone $KS_PORT keystone.wsgi.api:application OS_KEYSTONE_CONFIG_DIR="$ETC/keystone"
  start_uwsgi glance $GLANCE_PORT glance.wsgi.api:application OS_GLANCE_CONFIG_DIR="$ETC/glance"
  start_uwsgi placement $PLACEMENT_PORT placement.wsgi.api:application OS_PLACEMENT_CONFIG_DIR="$ETC/placement"
  start_uwsgi nova-api $NOVA_PORT flotilla_nova_api:application OS_NOVA_CONFIG_DIR="$ETC/nova"
  start_uwsgi neutron $NEUTRON_PORT neutron.wsgi.api:application OS_NEUTRON_CONFIG_DIR="$ETC/neutron"
}
start_nova() { for s in $NOVA_SVCS; do start_daemon "$s" "$VENV/bin/$s" --config-file "$ETC/nova/nova.conf"; done; }
port_of() { case $1 in keystone) echo $KS_PORT;; glance) echo $GLANCE_PORT;; placement) echo $PLACEMENT_PORT;; nova-api) echo $NOVA_PORT;; neutron) echo $NEUTRON_PORT;; esac; }
wait_apis() {
  for a in ${1:-$APIS}; do
    for i in $(seq 1 400); do
      curl -s -o /dev/null -m 2 "http://$H:$(port_of "$a")/" && break
      alive "$a" || die "$a died, see $LOG/$a*.log"
      [ "$i" = 400 ] && die "$a does not answer"
      sleep 0.2
    done
  done
}
token() { # USER PROJECT
  curl -sf -i -H 'Content-Type: application/json' \
    -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"'"$1"'","domain":{"id":"default"},"password":"'$PW'"}}},"scope":{"project":{"name":"'"$2"'","domain":{"id":"default"}}}}}' \
    "http://$H:$KS_PORT/v3/auth/tokens" | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r'
}
wait_compute() { # SINCE: the compute's heartbeat must be newer than SINCE (old DB rows say "up" too)
  local tok; tok=$(token admin admin)
  for _ in $(seq 1 300); do
    curl -s -H "X-Auth-Token: $tok" "http://$H:$NOVA_PORT/v2.1/os-services?binary=nova-compute" \
      | jq -e --arg s "$1" '[.services[] | select(.state=="up" and .updated_at > $s)] | length >= 1' >/dev/null 2>&1 && return 0
    for s in $NOVA_SVCS; do alive "$s" || die "$s died, see $LOG/$s.log"; done
    sleep 0.5
  done
  die "nova-compute never reported up"
}

start() {
  local since; since=$(date -u +%Y-%m-%dT%H:%M:%S)
  start_mysql; start_rabbit; start_apis; wait_rabbit; start_nova; wait_apis; wait_compute "$since"
  log "cloud up ($(since_start))"
}
stop_services() { # [GRACE]
  local jobs=""
  for s in $NOVA_SVCS $APIS; do stop_pid "$s" "${1:-5}" & jobs="$jobs $!"; done
  wait $jobs
}

# ------------------------------------------------------------------ init (once; then snapshot)
keystone_setup() {
  local tok KS=http://$H:$KS_PORT/v3
  tok=$(token admin admin)
  api() { curl -sf -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' "$@"; }
  role() { api "$KS/roles?name=$1" | jq -r '.roles[0].id // empty'; }
  local admin member service svc demo uid sid
  admin=$(role admin); member=$(role member); service=$(role service)
  [ -n "$service" ] || service=$(api -d '{"role":{"name":"service"}}' "$KS/roles" | jq -r .role.id)
  svc=$(api -d '{"project":{"name":"service","domain_id":"default"}}' "$KS/projects" | jq -r .project.id)
  demo=$(api -d '{"project":{"name":"demo","domain_id":"default"}}' "$KS/projects" | jq -r .project.id)
  for u in nova neutron glance placement; do
    uid=$(api -d '{"user":{"name":"'$u'","domain_id":"default","password":"'$PW'"}}' "$KS/users" | jq -r .user.id)
    api -X PUT "$KS/projects/$svc/users/$uid/roles/$admin" -o /dev/null
    api -X PUT "$KS/projects/$svc/users/$uid/roles/$service" -o /dev/null
  done
  uid=$(api -d '{"user":{"name":"demo","domain_id":"default","password":"'$PW'"}}' "$KS/users" | jq -r .user.id)
  api -X PUT "$KS/projects/$demo/users/$uid/roles/$member" -o /dev/null
  for spec in "compute nova http://$H:$NOVA_PORT/v2.1" "image glance http://$H:$GLANCE_PORT" \
              "placement placement http://$H:$PLACEMENT_PORT" "network neutron http://$H:$NEUTRON_PORT"; do
    set -- $spec
    sid=$(api -d '{"service":{"type":"'$1'","name":"'$2'"}}' "$KS/services" | jq -r .service.id)
    for i in public internal admin; do
      api -d '{"endpoint":{"service_id":"'$sid'","interface":"'$i'","region_id":"RegionOne","url":"'$3'"}}' "$KS/endpoints" -o /dev/null
    done
  done
}
fake_agent() { # registers a never-expiring OVS agent row so ML2 binds ports on the fake compute
  "$VENV/bin/python" - "$(dburl neutron)" $COMPUTE_HOST <<'EOF'
import datetime, json, sys, uuid
import sqlalchemy as sa
url, host = sys.argv[1], sys.argv[2]
now = datetime.datetime.utcnow().replace(microsecond=0)
conf = {"bridge_mappings": {"physnet1": "br-ex", "public": "br-ex"}, "tunnel_types": ["vxlan"],
        "integration_bridge": "br-int", "ovs_hybrid_plug": False, "datapath_type": "system",
        "ovs_capabilities": {"datapath_types": ["system"], "iface_types": []},
        "tunneling_ip": "127.0.0.1", "l2_population": False, "devices": 0}
with sa.create_engine(url).begin() as c:
    c.execute(sa.text("DELETE FROM agents WHERE host=:h"), {"h": host})
    c.execute(sa.text("INSERT INTO agents (id, agent_type, `binary`, topic, host, admin_state_up, created_at,"
                      " started_at, heartbeat_timestamp, configurations, `load`, resources_synced) VALUES"
                      " (:id, 'Open vSwitch agent', 'neutron-openvswitch-agent', 'N/A', :h, 1, :n, :n, :n, :c, 0, 1)"),
              {"id": str(uuid.uuid4()), "h": host, "n": now, "c": json.dumps(conf)})
EOF
}
baseline() { # what every test can rely on: quotas, flavors, an image, networks
  local tok demo; tok=$(token admin admin)
  api() { curl -sf -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' -H 'OpenStack-API-Version: compute 2.53' "$@"; }
  demo=$(api "http://$H:$KS_PORT/v3/projects?name=demo" | jq -r '.projects[0].id')
  api -X PUT -d '{"quota_set":{"instances":-1,"cores":-1,"ram":-1}}' "http://$H:$NOVA_PORT/v2.1/os-quota-sets/$demo" >/dev/null
  api -X PUT -d '{"quota":{"port":-1,"network":-1,"subnet":-1,"floatingip":-1,"router":-1,"security_group":-1,"security_group_rule":-1}}' \
    "http://$H:$NEUTRON_PORT/v2.0/quotas/$demo" >/dev/null
  api -d '{"flavor":{"name":"m1.tiny","id":"1","ram":512,"vcpus":1,"disk":1}}' "http://$H:$NOVA_PORT/v2.1/flavors" >/dev/null
  api -d '{"flavor":{"name":"m1.small","id":"2","ram":2048,"vcpus":1,"disk":20}}' "http://$H:$NOVA_PORT/v2.1/flavors" >/dev/null
  local img; img=$(api -d '{"name":"debian-12","disk_format":"raw","container_format":"bare","visibility":"public"}' "http://$H:$GLANCE_PORT/v2/images" | jq -r .id)
  head -c 1024 /dev/zero | curl -sf -X PUT -H "X-Auth-Token: $tok" -H 'Content-Type: application/octet-stream' --data-binary @- "http://$H:$GLANCE_PORT/v2/images/$img/file"
  local pub; pub=$(api -d '{"network":{"name":"public","router:external":true,"provider:network_type":"flat","provider:physical_network":"public"}}' "http://$H:$NEUTRON_PORT/v2.0/networks" | jq -r .network.id)
  # Floating addresses exist only as rows in neutron's DB: nothing is ever routed to them.
  api -d '{"subnet":{"name":"public-subnet","network_id":"'$pub'","ip_version":4,"cidr":"10.199.2.0/24","enable_dhcp":false}}' "http://$H:$NEUTRON_PORT/v2.0/subnets" >/dev/null
  # The demo project's network: its fixed IPs are where the data plane puts real hosts; a router
  # to the external network makes floating IPs associable.
  local dtok net sub router; dtok=$(token demo demo)
  dapi() { curl -sf -H "X-Auth-Token: $dtok" -H 'Content-Type: application/json' "$@"; }
  net=$(dapi -d '{"network":{"name":"private"}}' "http://$H:$NEUTRON_PORT/v2.0/networks" | jq -r .network.id)
  sub=$(dapi -d '{"subnet":{"name":"private-subnet","network_id":"'$net'","ip_version":4,"cidr":"10.199.1.0/24","gateway_ip":"10.199.1.1","allocation_pools":[{"start":"10.199.1.10","end":"10.199.1.250"}],"enable_dhcp":false}}' \
    "http://$H:$NEUTRON_PORT/v2.0/subnets" | jq -r .subnet.id)
  router=$(dapi -d '{"router":{"name":"private-router","external_gateway_info":{"network_id":"'$pub'"}}}' "http://$H:$NEUTRON_PORT/v2.0/routers" | jq -r .router.id)
  dapi -X PUT -d '{"subnet_id":"'$sub'"}' "http://$H:$NEUTRON_PORT/v2.0/routers/$router/add_router_interface" >/dev/null
}
init() {
  log "initialising a new cloud"
  stop_services 0 >/dev/null 2>&1; stop_rabbit; stop_mysql 0
  rm -rf "$RUN"; configure
  start_mysql; start_rabbit
  for d in keystone glance placement nova_api nova nova_cell0 neutron; do
    echo "DROP DATABASE IF EXISTS $d; CREATE DATABASE $d CHARACTER SET utf8mb4;"
  done | mysql --defaults-file="$ETC/mysql/my.cnf" || die "creating databases failed"
  local kc="--config-file $ETC/keystone/keystone.conf"
  keystone-manage $kc db_sync >>"$LOG/init.out" 2>&1 || die "keystone db_sync"
  keystone-manage $kc fernet_setup --keystone-user root --keystone-group root >>"$LOG/init.out" 2>&1
  keystone-manage $kc credential_setup --keystone-user root --keystone-group root >>"$LOG/init.out" 2>&1
  keystone-manage $kc bootstrap --bootstrap-password $PW --bootstrap-admin-url "http://$H:$KS_PORT/v3" \
    --bootstrap-internal-url "http://$H:$KS_PORT/v3" --bootstrap-public-url "http://$H:$KS_PORT/v3" \
    --bootstrap-region-id RegionOne >>"$LOG/init.out" 2>&1 || die "keystone bootstrap"
  start_uwsgi keystone $KS_PORT keystone.wsgi.api:application OS_KEYSTONE_CONFIG_DIR="$ETC/keystone"
  local jobs=""
  ( glance-manage --config-file "$ETC/glance/glance-api.conf" db_sync >>"$LOG/init-glance.out" 2>&1 || log "glance db_sync failed" ) & jobs="$jobs $!"
  ( placement-manage --config-file "$ETC/placement/placement.conf" db sync >>"$LOG/init-placement.out" 2>&1 || log "placement db sync failed" ) & jobs="$jobs $!"
  ( neutron-db-manage --config-file "$ETC/neutron/neutron.conf" --config-file "$ETC/neutron/plugins/ml2/ml2_conf.ini" upgrade heads \
      >>"$LOG/init-neutron.out" 2>&1 || log "neutron db failed" ) & jobs="$jobs $!"
  local nm="nova-manage --config-file $ETC/nova/nova.conf"
  ( $nm api_db sync && $nm cell_v2 map_cell0 --database_connection "$(dburl nova_cell0)" && $nm db sync \
      && $nm cell_v2 create_cell --name cell1 ) >>"$LOG/init-nova.out" 2>&1 || die "nova db init failed, see $LOG/init-nova.out"
  wait $jobs
  wait_apis keystone
  keystone_setup >>"$LOG/init.out" 2>&1 || die "keystone setup failed"
  fake_agent >>"$LOG/init.out" 2>&1 || die "fake agent registration failed"
  local since; since=$(date -u +%Y-%m-%dT%H:%M:%S)
  start_apis; wait_rabbit; start_nova; wait_apis
  # Map the compute host into cell1. (Never pipe nova-manage into `grep -q`: the early-closed
  # pipe kills it before it writes the mapping.)
  for i in $(seq 1 120); do
    alive nova-compute || die "nova-compute died, see $LOG/nova-compute.log"
    $nm cell_v2 discover_hosts >/dev/null 2>&1
    out=$($nm cell_v2 list_hosts 2>/dev/null)
    case "$out" in *" $COMPUTE_HOST "*) break ;; esac
    [ "$i" = 120 ] && die "compute host never discovered"
    sleep 1
  done
  wait_compute "$since"
  baseline || die "baseline resources failed"
  log "cloud initialised ($(since_start)); saving the pristine snapshot"
  stop_services 0; stop_mysql
  rm -rf "$PRISTINE"; mkdir -p "$PRISTINE"
  cp -a "$RUN/mysql" "$PRISTINE/mysql"; cp -a "$RUN/glance/images" "$PRISTINE/glance-images"
  cp -a "$RUN/keystone" "$PRISTINE/keystone"; cp -a "$RUN/nova" "$PRISTINE/nova"
}
restore() { # the pristine DB and files; services must be stopped
  rm -rf "$RUN/mysql" "$RUN/glance/images" "$RUN/keystone" "$RUN/nova"
  cp -a "$PRISTINE/mysql" "$RUN/mysql"; cp -a "$PRISTINE/glance-images" "$RUN/glance/images"
  cp -a "$PRISTINE/keystone" "$RUN/keystone"; cp -a "$PRISTINE/nova" "$RUN/nova"
  rm -f "$RUN/fail-spawns" "$RUN/lose-server-creates" "$RUN"/fault-*
}

dataplane_start() {
  alive dataplane && return 0
  local rev img
  rev=$(sed -n 's/^pub const IMAGE_REVISION: u32 = \([0-9]*\);/\1/p' "$HERE/../../providers/docker/src/image.rs")
  img="flotilla/node:bookworm-r$rev"
  setsid python3 "$HERE/dataplane.py" --keystone "http://$H:$KS_PORT/v3" --password $PW --image "$img" \
    </dev/null >"$LOG/dataplane.log" 2>&1 &
  echo $! >"$RUN/dataplane.pid"; disown $!
}

up() {
  command -v mariadbd >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v jq >/dev/null \
    || die "needs mariadb-server, rabbitmq-server, jq, curl (scripts/test-all.sh installs them)"
  install
  mkdir -p "$RUN" "$LOG"
  configure
  local key; key=$(cat "$HERE/testcloud.sh" "$HERE/requirements.txt" "$HERE/flotilla_fakes.py" | sha256sum | cut -c1-16)
  if [ ! -d "$PRISTINE/mysql" ] || [ "$(cat "$PRISTINE/.key" 2>/dev/null)" != "$key" ]; then
    init
    echo "$key" >"$PRISTINE/.key"
  elif ! alive keystone; then
    stop_services 0 >/dev/null 2>&1; stop_mysql 0; restore
  fi
  start
  dataplane_start
}

reset() {
  local t0; t0=$(date +%s.%N)
  stop_pid dataplane 2
  stop_services 0; stop_mysql 0; restore
  start
  dataplane_start
  log "reset in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
}

down() {
  stop_pid dataplane 2
  stop_services 5; stop_rabbit; stop_mysql 5
  docker ps -aq --filter label=io.flotilla.os-dataplane | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker volume ls -q | grep '^osdp-' | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  docker network rm flotilla-os-dp >/dev/null 2>&1 || true
  log "stopped"
}

env_vars() {
  cat <<EOF
export OS_AUTH_URL=http://$H:$KS_PORT/v3 OS_USERNAME=demo OS_PASSWORD=$PW OS_PROJECT_NAME=demo
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=RegionOne OS_INTERFACE=public
EOF
}

case "${1:-}" in
  up) up ;;
  reset) reset ;;
  down) down ;;
  env) env_vars ;;
  fail-next-spawns) echo "${2:-1}" >"$RUN/fail-spawns" ;;
  # lose-next-creates N: the next N server creates go through, but their answers become 504
  lose-next-creates) echo "${2:-1}" >"$RUN/lose-server-creates" ;;
  # fault SERVICE on|off: the API (keystone, glance, placement, nova-api, neutron) answers 503
  fault) if [ "${3:-}" = on ]; then touch "$RUN/fault-$2-503"; else rm -f "$RUN/fault-$2-503"; fi ;;
  *) echo "usage: $0 up|reset|down|env|fail-next-spawns N|lose-next-creates N|fault SERVICE on|off" >&2; exit 2 ;;
esac
