//! A worker process told to exit leaves `serve` at once, whichever of its
//! two threads holds the socket when `Exit` comes (the thread that reads
//! it must stop the other before letting go of the socket, or the other
//! waits for a frame that never comes and the process never exits).

use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use redis_tasks_protocol::ipc::{FromWorker, ToWorker, recv, send};
use redis_tasks_worker::TaskRegistry;
use redis_tasks_worker::process::serve;

#[test]
fn exit_ends_serving_whichever_thread_reads_it() {
    // The two threads race for the socket after Ready; many rounds give
    // each of them the Exit many times.
    for round in 0..40 {
        let (mut ours, theirs) = UnixStream::pair().expect("socket pair");
        let fd = theirs.into_raw_fd();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let registry = TaskRegistry::new();
            let _ = done_tx.send(serve(&registry, &[], fd).is_ok());
        });
        let hello = recv::<FromWorker>(&mut ours).expect("hello");
        assert!(matches!(hello, Some(FromWorker::Hello { .. })), "{hello:?}");
        let setup = ToWorker::Setup {
            middleware: Vec::new(),
            confine: None,
        };
        send(&mut ours, &setup).expect("setup");
        let ready = recv::<FromWorker>(&mut ours).expect("ready");
        assert!(matches!(ready, Some(FromWorker::Ready)), "{ready:?}");
        send(&mut ours, &ToWorker::Exit).expect("exit");
        // Our end stays open: only the Exit itself may end the serving.
        assert_eq!(
            done.recv_timeout(Duration::from_secs(30)),
            Ok(true),
            "round {round}: the worker process did not leave serve after Exit"
        );
    }
}
