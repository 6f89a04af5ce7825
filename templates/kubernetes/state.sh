# What kubeadm left on this node: admin.conf (a control-plane), kubelet.conf (joined).
[ -f /etc/kubernetes/admin.conf ] && echo "admin_conf=yes" || echo "admin_conf=no"
[ -f /etc/kubernetes/kubelet.conf ] && echo "kubelet_conf=yes" || echo "kubelet_conf=no"
