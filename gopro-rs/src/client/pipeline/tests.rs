use super::*;

fn now() -> Instant {
    Instant::now()
}

fn open(config: PipelineConfig) -> Pipeline {
    let mut p = Pipeline::new(config);
    p.start_connection(now());
    p
}

fn write_all(p: &mut Pipeline) -> Vec<u8> {
    let out = p.to_write().to_vec();
    p.wrote(out.len(), now());
    out
}

fn receive(p: &mut Pipeline, frame: Frame) {
    p.read_buf().extend_from_slice(&frame.to_bytes());
}

fn reply_position(p: &mut Pipeline) -> Option<Position> {
    match p.poll_event(now()) {
        Some(Event::Reply { position, .. }) => Some(position),
        None => None,
        Some(other) => panic!("not a reply: {other:?}"),
    }
}

fn resending() -> PipelineConfig {
    PipelineConfig {
        resend: true,
        ..PipelineConfig::default()
    }
}

#[test]
fn replies_go_to_positions_in_order_even_split_across_reads() {
    let mut p = open(PipelineConfig::default());
    let positions: Vec<_> = (0..3)
        .map(|i| {
            p.submit(Command::MESSAGE, format!("m{i}").as_bytes())
                .unwrap()
        })
        .collect();
    assert_eq!(positions, [0, 1, 2]);
    assert_eq!(p.in_flight(), 3);
    let wire = write_all(&mut p);
    assert_eq!(wire.len(), 3 * (HEADER_LEN + 2));
    let mut replies = BytesMut::new();
    for i in 0..3 {
        replies.extend_from_slice(&Frame::new(Command::MESSAGE, format!("r{i}")).to_bytes());
    }
    // One byte at a time: nothing comes out before a whole frame.
    let mut got = Vec::new();
    for byte in replies.iter() {
        p.read_buf().extend_from_slice(&[*byte]);
        while let Some(Event::Reply { position, frame }) = p.poll_event(now()) {
            got.push((position, frame.body));
        }
    }
    assert_eq!(got, [(0, "r0".into()), (1, "r1".into()), (2, "r2".into())]);
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn a_frame_with_nothing_written_is_unsolicited() {
    let mut p = open(PipelineConfig::default());
    p.submit(Command::MESSAGE, b"queued, not written").unwrap();
    receive(&mut p, Frame::new(Command::MESSAGE, "early"));
    assert!(matches!(p.poll_event(now()), Some(Event::Unsolicited(_))));
}

#[test]
fn garbage_is_a_protocol_event() {
    let mut p = open(PipelineConfig::default());
    p.submit(Command::MESSAGE, b"x").unwrap();
    write_all(&mut p);
    p.read_buf().extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    assert!(matches!(
        p.poll_event(now()),
        Some(Event::Protocol(crate::Error::BadMagic { .. }))
    ));
}

#[test]
fn a_body_over_the_limit_is_refused_and_nothing_queued() {
    let mut p = open(PipelineConfig {
        max_body: 4,
        ..PipelineConfig::default()
    });
    let err = p.submit(Command::MESSAGE, b"12345").unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::BodyTooLarge {
                length: 5,
                limit: 4
            }
        ),
        "{err}"
    );
    assert!(p.to_write().is_empty());
    assert_eq!(p.in_flight(), 0);
    assert_eq!(p.submit(Command::MESSAGE, b"1234").unwrap(), 0);
}

#[test]
fn goaway_stops_writing_and_nothing_unanswered_was_handled() {
    let mut p = open(resending());
    for i in 0..4 {
        p.submit(Command::MESSAGE, &[i]).unwrap();
    }
    // Two written, two still queued.
    let two = 2 * (HEADER_LEN + 1);
    p.wrote(two, now());
    receive(&mut p, Frame::new(Command::MESSAGE, "r0"));
    receive(&mut p, Frame::goaway("restart"));
    assert_eq!(reply_position(&mut p), Some(0));
    assert!(matches!(p.poll_event(now()), Some(Event::GoAway { reason }) if reason == "restart"));
    assert!(p.to_write().is_empty(), "nothing is written after a GOAWAY");
    // Without reconnecting, all three fail as not handled.
    let mut q = open(PipelineConfig::default());
    q.submit(Command::MESSAGE, b"a").unwrap();
    write_all(&mut q);
    receive(&mut q, Frame::goaway(""));
    assert!(matches!(q.poll_event(now()), Some(Event::GoAway { .. })));
    assert_eq!(q.end_connection(false), [(0, Fate::NotHandled)]);
    // Reconnecting: all three are kept and written again, in order.
    assert!(p.end_connection(true).is_empty());
    assert_eq!(p.start_connection(now()), 3);
    let again = write_all(&mut p);
    let bodies: Vec<u8> = again
        .chunks(HEADER_LEN + 1)
        .map(|f| f[HEADER_LEN])
        .collect();
    assert_eq!(bodies, [1, 2, 3]);
    for i in 1..4 {
        receive(&mut p, Frame::new(Command::MESSAGE, format!("r{i}")));
    }
    assert_eq!(reply_position(&mut p), Some(1));
    assert_eq!(reply_position(&mut p), Some(2));
    assert_eq!(reply_position(&mut p), Some(3));
}

#[test]
fn a_lost_connection_fails_what_was_written_and_keeps_the_rest() {
    let mut config = resending();
    config.repeatable.insert(Command(42));
    let mut p = open(config);
    p.submit(Command::MESSAGE, b"written").unwrap(); // 0
    p.submit(Command(42), b"repeatable").unwrap(); // 1
    p.submit(Command::MESSAGE, b"written too").unwrap(); // 2
    p.submit(Command::MESSAGE, b"half").unwrap(); // 3
    p.submit(Command::MESSAGE, b"queued").unwrap(); // 4
    let full: usize = [7, 10, 11].iter().map(|n| HEADER_LEN + n).sum();
    p.wrote(full + 3, now());
    // 0 fails at once; 1 is kept; 2's failure waits for 1's reply, so that
    // a caller reading in order sees them in order.
    assert_eq!(p.end_connection(true), [(0, Fate::MayHaveBeenHandled)]);
    assert_eq!(p.start_connection(now()), 3);
    assert_eq!(p.in_flight(), 4);
    let again = write_all(&mut p);
    assert_eq!(again.len(), 3 * HEADER_LEN + 10 + 4 + 6);
    assert!(p.poll_event(now()).is_none(), "2 waits for 1");
    for body in ["r1", "r3", "r4"] {
        receive(&mut p, Frame::new(Command::MESSAGE, body));
    }
    assert_eq!(reply_position(&mut p), Some(1));
    assert!(matches!(
        p.poll_event(now()),
        Some(Event::Failed {
            position: 2,
            fate: Fate::MayHaveBeenHandled
        })
    ));
    assert_eq!(reply_position(&mut p), Some(3));
    assert_eq!(reply_position(&mut p), Some(4));
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn without_resend_every_request_ends_with_its_connection() {
    let mut p = open(PipelineConfig::default());
    p.submit(Command::HEARTBEAT, b"").unwrap();
    p.submit(Command::MESSAGE, b"q").unwrap();
    p.wrote(HEADER_LEN, now());
    assert_eq!(
        p.end_connection(true),
        [(0, Fate::MayHaveBeenHandled), (1, Fate::NotHandled)]
    );
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn login_goes_first_on_every_connection() {
    let mut p = open(PipelineConfig {
        resend: true,
        login: Some(Bytes::from_static(b"secret")),
        ..PipelineConfig::default()
    });
    p.submit(Command::MESSAGE, b"m").unwrap();
    let wire = write_all(&mut p);
    assert_eq!(wire[3], Command::LOGIN.0);
    assert_eq!(&wire[HEADER_LEN..HEADER_LEN + 6], b"secret");
    receive(&mut p, Frame::new(Command::LOGIN, "OK"));
    assert!(matches!(p.poll_event(now()), Some(Event::LoggedIn)));
    receive(&mut p, Frame::goaway(""));
    assert!(matches!(p.poll_event(now()), Some(Event::GoAway { .. })));
    p.end_connection(true);
    p.start_connection(now());
    let wire = write_all(&mut p);
    assert_eq!(wire[3], Command::LOGIN.0, "LOGIN again, before the request");
    assert_eq!(wire[HEADER_LEN + 6 + 3], Command::MESSAGE.0);
    receive(&mut p, Frame::error("bad credentials"));
    assert!(matches!(
        p.poll_event(now()),
        Some(Event::LoginRefused(ClientError::Server { .. }))
    ));
}

#[test]
fn keep_alives_are_nobodys_and_due_only_while_idle() {
    let interval = Duration::from_secs(5);
    let mut p = open(PipelineConfig::default());
    let due = p.keep_alive_due(interval).unwrap();
    p.keep_alive();
    assert!(
        p.keep_alive_due(interval).is_none(),
        "not while one is unanswered"
    );
    write_all(&mut p);
    assert!(p.keep_alive_due(interval).is_none());
    let position = p.submit(Command::MESSAGE, b"m").unwrap();
    write_all(&mut p);
    receive(&mut p, Frame::heartbeat());
    receive(&mut p, Frame::new(Command::MESSAGE, "r"));
    assert_eq!(reply_position(&mut p), Some(position));
    assert!(p.keep_alive_due(interval).unwrap() >= due);
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn the_reply_deadline_runs_from_the_oldest_written_request() {
    let timeout = Duration::from_secs(30);
    let t0 = now();
    let mut p = Pipeline::new(PipelineConfig::default());
    p.start_connection(t0);
    p.submit(Command::MESSAGE, b"a").unwrap();
    assert!(p.reply_deadline(timeout).is_none(), "nothing written yet");
    let t1 = t0 + Duration::from_secs(1);
    p.wrote(HEADER_LEN + 1, t1);
    assert_eq!(p.reply_deadline(timeout), Some(t1 + timeout));
    p.submit(Command::MESSAGE, b"b").unwrap();
    p.wrote(HEADER_LEN + 1, t1 + Duration::from_secs(5));
    assert_eq!(
        p.reply_deadline(timeout),
        Some(t1 + timeout),
        "the oldest counts"
    );
    receive(&mut p, Frame::new(Command::MESSAGE, "ra"));
    let t2 = t1 + Duration::from_secs(10);
    assert!(p.poll_event(t2).is_some());
    assert_eq!(
        p.reply_deadline(timeout),
        Some(t2 + timeout),
        "a reply restarts it"
    );
    receive(&mut p, Frame::new(Command::MESSAGE, "rb"));
    assert!(p.poll_event(t2).is_some());
    assert!(p.reply_deadline(timeout).is_none());
}

#[test]
fn encoded_batches_get_a_position_each_and_are_checked() {
    let mut p = open(resending());
    let mut wire = BytesMut::new();
    for body in ["a", "bb", "ccc"] {
        Frame::new(Command::MESSAGE, body)
            .encode(&mut wire)
            .unwrap();
    }
    let wire = wire.freeze();
    assert_eq!(p.submit_encoded(&wire).unwrap(), 0..3);
    assert_eq!(p.in_flight(), 3);
    assert_eq!(p.to_write(), &wire[..]);
    let bad = wire.slice(..wire.len() - 1);
    let err = p.submit_encoded(&bad).unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidEncoded { index: 2, .. }),
        "{err}"
    );
    assert_eq!(p.in_flight(), 3, "nothing of a bad batch is queued");
}

#[test]
fn bytes_queued_marks_where_a_flush_ends() {
    let mut p = open(PipelineConfig::default());
    p.submit(Command::MESSAGE, b"abc").unwrap();
    let mark = p.bytes_queued();
    assert_eq!(mark, (HEADER_LEN + 3) as u64);
    p.wrote(4, now());
    assert!(p.bytes_written() < mark);
    p.wrote(HEADER_LEN + 3 - 4, now());
    assert_eq!(p.bytes_written(), mark);
}

#[test]
fn command_sets_hold_any_code_and_always_heartbeat() {
    let mut set = CommandSet::default();
    assert!(set.contains(Command::HEARTBEAT));
    assert!(!set.contains(Command::MESSAGE));
    for code in [63, 64, 200, 255] {
        set.insert(Command(code));
        assert!(set.contains(Command(code)));
    }
    assert!(!set.contains(Command(254)));
}
