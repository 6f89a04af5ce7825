//! The backend contract, checked the same way against every backend: compare-and-swap writes,
//! history, a lock that excludes others, fencing after a force-unlock, and (for leases) a lock
//! that another process takes over once its holder stopped renewing it.

use super::{LockAttempt, StateBackend, HISTORY_KEPT};
use crate::state::lock::Holder;
use crate::state::store::StoreError;
use std::time::Duration;

fn holder(pid: u32, command: &str) -> Holder {
    Holder {
        pid,
        host: "conformance".into(),
        started_at: crate::util::now_rfc3339(),
        command: command.into(),
    }
}

/// Panics (with the step) at the first broken promise. Uses deployments named `conf-*`.
pub fn run(b: &dyn StateBackend) {
    let name = format!("conf-{}", std::process::id());
    let _ = b.delete(&name);
    assert!(
        b.read(&name).expect("read missing").is_none(),
        "missing reads as none"
    );

    // Compare-and-swap.
    assert_eq!(
        b.write(&name, b"{\"v\":1}", None, None, "t", None)
            .expect("create"),
        1
    );
    let again = b.write(&name, b"{\"v\":1}", None, None, "t", None);
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "create twice: {again:?}"
    );
    assert_eq!(
        b.write(&name, b"{\"v\":2}", Some(1), None, "t", None)
            .expect("update"),
        2
    );
    let stale = b.write(&name, b"{\"v\":3}", Some(1), None, "t", None);
    assert!(
        matches!(stale, Err(StoreError::Conflict { found: Some(2), .. })),
        "stale write: {stale:?}"
    );
    let rec = b.read(&name).expect("read").expect("present");
    assert_eq!((rec.body.as_slice(), rec.version), (&b"{\"v\":2}"[..], 2));
    assert!(b.list().expect("list").contains(&name), "listed");

    // History: only a run's end is kept (the document given as its snapshot), newest first,
    // bounded to the last runs.
    assert!(
        b.history(&name).expect("history").is_empty(),
        "steps are not history"
    );
    let v3 = b
        .write(
            &name,
            b"{\"v\":3,\"files\":1}",
            Some(2),
            None,
            "t",
            Some(b"{\"v\":3}"),
        )
        .expect("end of a run");
    let h = b.history(&name).expect("history");
    assert_eq!(h.iter().map(|e| e.version).collect::<Vec<_>>(), vec![v3]);
    assert_eq!(
        b.read_version(&name, v3).expect("v3").as_deref(),
        Some(&b"{\"v\":3}"[..])
    );
    assert_eq!(
        b.read_version(&name, 2).expect("v2"),
        None,
        "a step is not kept"
    );
    let mut v = v3;
    let mut runs = vec![v3];
    for i in 0..HISTORY_KEPT + 3 {
        let step = format!("{{\"i\":{i},\"step\":true}}");
        v = b
            .write(&name, step.as_bytes(), Some(v), None, "t", None)
            .expect("step");
        let end = format!("{{\"i\":{i}}}");
        v = b
            .write(
                &name,
                end.as_bytes(),
                Some(v),
                None,
                "t",
                Some(end.as_bytes()),
            )
            .expect("run end");
        runs.push(v);
    }
    let h = b.history(&name).expect("history");
    let kept: Vec<u64> = runs
        .iter()
        .rev()
        .take(HISTORY_KEPT as usize)
        .copied()
        .collect();
    assert_eq!(
        h.iter().map(|e| e.version).collect::<Vec<_>>(),
        kept,
        "the last runs, newest first"
    );

    // The lock excludes others and names its holder.
    let a = holder(1001, "heal");
    let lease = Duration::from_secs(2);
    let LockAttempt::Acquired(held) = b.try_lock(&name, &a, lease).expect("lock") else {
        panic!("a free lock must be taken");
    };
    match b
        .try_lock(&name, &holder(1002, "scale"), lease)
        .expect("second lock")
    {
        LockAttempt::Held(Some(info)) => assert_eq!(info.holder, a, "names the holder"),
        LockAttempt::Held(None) => panic!("a held lock must name its holder"),
        LockAttempt::Acquired(_) => panic!("a held lock must not be taken twice"),
    }
    assert_eq!(
        b.lock_status(&name).expect("status").map(|i| i.holder),
        Some(a.clone())
    );
    assert!(held.renew().expect("renew"), "the holder renews its lease");
    let token = held.token();
    v = b
        .write(
            &name,
            b"{\"locked\":true}",
            Some(v),
            token.as_deref(),
            "t",
            None,
        )
        .expect("write under the lock");

    if token.is_some() {
        // Leases: force-unlock fences the old holder off, and a lease nobody renews expires.
        assert!(b.force_unlock(&name).expect("force"), "there was a lock");
        let fenced = b.write(&name, b"{}", Some(v), token.as_deref(), "t", None);
        assert!(
            matches!(fenced, Err(StoreError::LockLost(_))),
            "fenced: {fenced:?}"
        );
        assert!(
            !held.renew().expect("renew after force"),
            "the lost lock cannot be renewed"
        );
        let LockAttempt::Acquired(second) = b
            .try_lock(&name, &holder(1003, "up"), Duration::from_secs(1))
            .expect("lock")
        else {
            panic!("a force-unlocked lock must be free");
        };
        // Not before the lease ends (servers round short leases up: etcd's minimum is ~2 s)...
        assert!(
            matches!(
                b.try_lock(&name, &holder(1004, "heal"), lease)
                    .expect("early"),
                LockAttempt::Held(_)
            ),
            "a live lease must not be taken over"
        );
        // ...but soon after: bounded polling, 10 s at most.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let third = loop {
            match b
                .try_lock(&name, &holder(1004, "heal"), lease)
                .expect("takeover")
            {
                LockAttempt::Acquired(l) => break l,
                LockAttempt::Held(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "an expired lease must be taken over"
                    );
                    flotilla_provider_core::backoff::pause_blocking(Duration::from_millis(200));
                }
            }
        };
        assert_eq!(third.taken_over_from().map(|h| h.pid), Some(1003));
        assert!(
            !second.renew().expect("renew"),
            "the expired holder learns it lost the lock"
        );
        third.release();
    } else {
        held.release();
    }
    assert!(b.lock_status(&name).expect("status").is_none(), "released");
    let LockAttempt::Acquired(again) = b
        .try_lock(&name, &holder(1005, "down"), lease)
        .expect("lock")
    else {
        panic!("a released lock must be free");
    };
    again.release();

    b.delete(&name).expect("delete");
    assert!(b.read(&name).expect("read").is_none(), "deleted");
    assert!(
        !b.list().expect("list").contains(&name),
        "not listed after delete"
    );
}
