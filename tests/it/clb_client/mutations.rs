//! Mutations: per-call limits, the per-binding fallback, task polling, partial failures, write timeouts.

use super::*;

#[tokio::test]
async fn register_splits_at_exactly_500_and_polls_each_task() {
    let server = MockServer::start().await;
    on(&server, "BatchRegisterTargets", accepted("reg", json!({"FailListenerIdSet": [], "Message": ""}))).await;
    tasks_succeed(&server).await;
    let clb = client(&server);
    let changes: Vec<Change> = (0..1001)
        .map(|n| if n % 2 == 0 { change("lbl-a", None, n, 10) } else { change("lbl-b", Some("loc-b"), n, 20) })
        .collect();
    let outcomes = clb.register(LB, &changes, &Stop::new()).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let bodies = sent(&server, "BatchRegisterTargets").await;
    assert_eq!(lens(&bodies, "Targets"), [500, 500, 1]);
    assert_eq!(
        bodies[0]["Targets"][0],
        json!({"ListenerId": "lbl-a", "EniIp": "10.0.0.0", "Port": 8080, "Weight": 10})
    );
    assert_eq!(
        bodies[0]["Targets"][1],
        json!({"ListenerId": "lbl-b", "LocationId": "loc-b", "EniIp": "10.0.0.1", "Port": 8080, "Weight": 20})
    );
    let tasks: Vec<Value> = sent(&server, "DescribeTaskStatus").await.iter().map(|b| b["TaskId"].clone()).collect();
    assert_eq!(tasks, [json!("reg-0"), json!("reg-1"), json!("reg-2")]);
}

#[tokio::test]
async fn unsupported_batch_action_falls_back_to_20_per_binding() {
    let server = MockServer::start().await;
    on(&server, "BatchDeregisterTargets", api_error("UnsupportedOperation")).await;
    on(&server, "DeregisterTargets", accepted("dereg", json!({}))).await;
    on(&server, "BatchModifyTargetWeight", api_error("InvalidAction")).await;
    on(&server, "ModifyTargetWeight", accepted("w", json!({}))).await;
    tasks_succeed(&server).await;
    let clb = client(&server);
    let changes: Vec<Change> = (0..45)
        .map(|n| change("lbl-a", None, n, 0))
        .chain((45..50).map(|n| change("lbl-b", Some("loc-b"), n, 0)))
        .collect();
    assert!(clb.deregister(LB, &changes, &Stop::new()).await.iter().all(Result::is_ok));
    let bodies = sent(&server, "DeregisterTargets").await;
    assert_eq!(lens(&bodies, "Targets"), [20, 20, 5, 5]);
    assert_eq!(bodies[3]["LocationId"], "loc-b");
    assert_eq!(bodies[0]["Targets"][0], json!({"EniIp": "10.0.0.0", "Port": 8080}));
    assert!(clb.set_weight(LB, &changes, &Stop::new()).await.iter().all(Result::is_ok));
    let bodies = sent(&server, "ModifyTargetWeight").await;
    assert_eq!(lens(&bodies, "Targets"), [20, 20, 5, 5]);
    assert_eq!(bodies[0]["Targets"][0]["Weight"], 0);
    assert_eq!(sent(&server, "BatchDeregisterTargets").await.len(), 1);
}

#[tokio::test]
async fn weights_pack_100_entries_of_50_and_500_targets() {
    let server = MockServer::start().await;
    on(&server, "BatchModifyTargetWeight", accepted("w", json!({}))).await;
    tasks_succeed(&server).await;
    let clb = client(&server);
    let many_bindings: Vec<Change> = (0..120).map(|n| change(&format!("lbl-{n:03}"), None, n, 0)).collect();
    assert!(clb.set_weight(LB, &many_bindings, &Stop::new()).await.iter().all(Result::is_ok));
    assert_eq!(lens(&sent(&server, "BatchModifyTargetWeight").await, "ModifyList"), [100, 20]);
    server.reset().await;
    on(&server, "BatchModifyTargetWeight", accepted("w", json!({}))).await;
    tasks_succeed(&server).await;
    let one_binding: Vec<Change> = (0..120).map(|n| change("lbl-a", Some("loc-1"), n, 50)).collect();
    assert!(clb.set_weight(LB, &one_binding, &Stop::new()).await.iter().all(Result::is_ok));
    let bodies = sent(&server, "BatchModifyTargetWeight").await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(lens(&bodies[0]["ModifyList"].as_array().unwrap().clone(), "Targets"), [50, 50, 20]);
    assert_eq!(bodies[0]["ModifyList"][0]["LocationId"], "loc-1");
}

#[tokio::test]
async fn task_running_then_done_succeeds() {
    let server = MockServer::start().await;
    on(&server, "BatchRegisterTargets", accepted("reg", json!({"FailListenerIdSet": null}))).await;
    Mock::given(header("X-TC-Action", "DescribeTaskStatus"))
        .respond_with(respond(json!({"Status": 2, "RequestId": "t"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    tasks_succeed(&server).await;
    let outcomes = client(&server).register(LB, &[change("lbl-a", None, 1, 10)], &Stop::new()).await;
    assert_eq!(codes(&outcomes), ["ok"]);
    assert_eq!(sent(&server, "DescribeTaskStatus").await.len(), 2);
}

#[tokio::test]
async fn failed_task_fails_every_change_of_its_call() {
    let server = MockServer::start().await;
    on(&server, "BatchRegisterTargets", accepted("reg", json!({"FailListenerIdSet": []}))).await;
    on(&server, "DescribeTaskStatus", respond(json!({"Status": 1, "Message": "quota", "RequestId": "t"}))).await;
    let outcomes =
        client(&server).register(LB, &[change("lbl-a", None, 1, 10), change("lbl-b", None, 2, 10)], &Stop::new()).await;
    assert_eq!(codes(&outcomes), ["TaskFailed", "TaskFailed"]);
    let failure = outcomes[0].as_ref().unwrap_err();
    assert_eq!((failure.message.as_str(), failure.request_id.as_deref()), ("task reg-0 failed: quota", Some("reg-0")));
}

#[tokio::test]
async fn never_finishing_task_times_out() {
    let server = MockServer::start().await;
    on(&server, "BatchModifyTargetWeight", accepted("w", json!({}))).await;
    on(&server, "DescribeTaskStatus", respond(json!({"Status": 2, "RequestId": "t"}))).await;
    let clb = ClbClient::new(ClientConfig { task_timeout: Duration::from_millis(100), ..config(&server, creds()) });
    let outcomes = clb.unwrap().set_weight(LB, &[change("lbl-a", None, 1, 0)], &Stop::new()).await;
    assert_eq!(codes(&outcomes), ["TaskTimeout"]);
}

#[tokio::test]
async fn partial_failure_fails_only_the_listed_listeners() {
    let server = MockServer::start().await;
    let fields = json!({"FailListenerIdSet": ["lbl-b"], "Message": "Listener lbl-b not exists."});
    on(&server, "BatchDeregisterTargets", accepted("d", fields)).await;
    tasks_succeed(&server).await;
    let changes = [change("lbl-a", None, 1, 0), change("lbl-b", Some("loc"), 2, 0), change("lbl-a", None, 3, 0)];
    let outcomes = client(&server).deregister(LB, &changes, &Stop::new()).await;
    assert_eq!(codes(&outcomes), ["ok", "PartialFailure", "ok"]);
    let failure = outcomes[1].as_ref().unwrap_err();
    assert_eq!(failure.message, "Listener lbl-b not exists.");
    assert_eq!(failure.request_id.as_deref(), Some("d-0"));
}

#[tokio::test]
async fn write_timeout_is_outcome_unknown_and_not_resent() {
    let server = MockServer::start().await;
    let slow = respond(json!({"FailListenerIdSet": [], "RequestId": "late"})).set_delay(Duration::from_secs(3));
    on(&server, "BatchRegisterTargets", slow.clone()).await;
    on(&server, "DescribeListeners", slow).await;
    tasks_succeed(&server).await;
    let cfg = ClientConfig { request_timeout: Duration::from_millis(200), ..config(&server, creds()) };
    let clb = ClbClient::new(cfg).unwrap();
    let outcomes = clb.register(LB, &[change("lbl-a", None, 1, 10), change("lbl-a", None, 2, 10)], &Stop::new()).await;
    assert_eq!(codes(&outcomes), ["OutcomeUnknown", "OutcomeUnknown"]);
    assert!(outcomes[0].as_ref().unwrap_err().message.contains("next run re-reads"));
    assert_eq!(sent(&server, "BatchRegisterTargets").await.len(), 1);
    assert!(sent(&server, "DescribeTaskStatus").await.is_empty());
    // A read is safe to repeat: it is retried up to the attempt limit.
    assert_eq!(clb.listeners(LB).await.unwrap_err().code(), "Transport");
    assert_eq!(sent(&server, "DescribeListeners").await.len(), 4);
}

#[tokio::test]
async fn unreadable_answer_to_a_write_is_outcome_unknown() {
    let server = MockServer::start().await;
    on(&server, "BatchRegisterTargets", ResponseTemplate::new(200).set_body_string("<html>")).await;
    let outcomes = client(&server).register(LB, &[change("lbl-a", None, 1, 10)], &Stop::new()).await;
    assert_eq!(codes(&outcomes), ["OutcomeUnknown"]);
    assert_eq!(sent(&server, "BatchRegisterTargets").await.len(), 1);
}

#[tokio::test]
async fn refused_connection_is_retried_even_for_writes() {
    // Nothing listens on this port: the request was never sent, so repeating it is safe.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = MockServer::start().await;
    let cfg = ClientConfig { endpoint: Endpoint::Url(format!("http://127.0.0.1:{port}")), ..config(&server, creds()) };
    let clb = ClbClient::new(cfg).unwrap();
    let outcomes = clb.register(LB, &[change("lbl-a", None, 1, 10)], &Stop::new()).await;
    assert_eq!(codes(&outcomes), ["Transport"]);
    assert_eq!(clb.stats()["BatchRegisterTargets"].requests, 4);
}

#[tokio::test]
async fn no_changes_make_no_calls_and_foreign_changes_are_refused() {
    let server = MockServer::start().await;
    let clb = client(&server);
    assert!(clb.register(LB, &[], &Stop::new()).await.is_empty());
    let mut foreign = change("lbl-a", None, 1, 10);
    foreign.binding.lb = "lb-other".into();
    assert_eq!(codes(&clb.deregister(LB, &[foreign], &Stop::new()).await), ["Refused"]);
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// Issue 24 item 1: a write is checked against the stop right before each request goes out. Stopped first: no
/// request at all, and the changes say why.
#[tokio::test]
async fn a_stopped_run_sends_no_write_and_says_why() {
    let server = MockServer::start().await;
    let clb = client(&server);
    let stop = Stop::new();
    stop.stop(Reason::RunTimeout(Duration::from_secs(25)));
    for outcomes in [
        clb.register(LB, &[change("lbl-a", None, 1, 10)], &stop).await,
        clb.set_weight(LB, &[change("lbl-a", None, 1, 0)], &stop).await,
        clb.deregister(LB, &[change("lbl-a", None, 1, 0)], &stop).await,
        clb.tag(LB, &[change("lbl-a", None, 1, 10)], &stop).await,
    ] {
        assert_eq!(codes(&outcomes), ["NotSent"]);
        let message = &outcomes[0].as_ref().unwrap_err().message;
        assert!(message.contains("not sent: the run was stopped (run timeout (--run-timeout 25s))"), "{message}");
    }
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing was sent");
}

/// Issue 24 item 1: the lease's write deadline passes while a write waits to be retried (the load balancer was
/// busy): the retry is not sent, although nothing but the clock changed.
#[tokio::test]
async fn a_retry_due_after_the_write_deadline_is_not_sent() {
    let server = MockServer::start().await;
    let busy = api_error("FailedOperation.ResourceInOperating").set_delay(Duration::from_millis(300));
    on(&server, "BatchRegisterTargets", busy).await;
    let fence = Fence::new(std::time::Instant::now() + Duration::from_millis(150), Reason::LeaseLost("late".into()));
    let stop = Stop::new().with_fence(&fence);
    let outcomes = client(&server).register(LB, &[change("lbl-a", None, 1, 10)], &stop).await;
    assert_eq!(codes(&outcomes), ["NotSent"]);
    assert_eq!(sent(&server, "BatchRegisterTargets").await.len(), 1, "only the attempt sent before the deadline");
}
