#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn checkpoint() -> SignedCheckpoint {
    SignedCheckpoint {
        seq: 1042,
        hash: "ab".repeat(32),
        root: "cd".repeat(32),
        time: "2026-11-30T12:00:01.000Z".into(),
        replica: "0123456789abcdef".into(),
        epoch: 7,
        key: "0011223344556677".into(),
        signature: "A".repeat(86) + "==",
    }
}

/// The message, taken apart by the grammar of RFC 5424 §6 (written out here, not borrowed
/// from the formatter): HEADER SP STRUCTURED-DATA SP MSG.
#[test]
fn a_checkpoint_is_one_rfc_5424_message_whose_msg_is_the_checkpoint() {
    let now = time::macros::datetime!(2026-11-30 12:00:01.042 UTC);
    let message = format_message(&checkpoint(), now, "host-a", 4242).unwrap();
    let (header, msg) = {
        // Seven space-separated fields before MSG: PRI+VERSION, TIMESTAMP, HOSTNAME,
        // APP-NAME, PROCID, MSGID, STRUCTURED-DATA.
        let mut fields = message.splitn(8, ' ');
        let header: Vec<&str> = fields.by_ref().take(7).collect();
        (header, fields.next().unwrap())
    };
    assert_eq!(
        header,
        [
            "<85>1",
            "2026-11-30T12:00:01.042Z",
            "host-a",
            "mayfly",
            "4242",
            "audit-checkpoint",
            "-"
        ]
    );
    // PRI: facility authpriv (10), severity notice (5).
    assert_eq!(10 * 8 + 5, 85);
    // TIMESTAMP is RFC 3339 (the time crate's own parser reads it back).
    let parsed =
        OffsetDateTime::parse(header[1], &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(parsed, now);
    // Every header field is 1-255 printable ASCII characters without a space (§6).
    for field in &header {
        assert!(
            !field.is_empty() && field.bytes().all(|b| b.is_ascii_graphic()),
            "{field:?}"
        );
    }
    // MSG is exactly the checkpoint, as compact JSON.
    let back: SignedCheckpoint = serde_json::from_str(msg).unwrap();
    assert_eq!(back, checkpoint());
    assert!(!msg.contains('\n') && !msg.contains(": "), "{msg}");
    assert!(message.len() < 1024, "{} bytes", message.len());

    // An unknown host name is the NILVALUE.
    let message = format_message(&checkpoint(), now, "-", 1).unwrap();
    assert!(message.starts_with("<85>1 2026-11-30T12:00:01.042Z - mayfly 1 "));
}

#[test]
fn a_message_over_the_limit_is_refused_not_cut() {
    let now = OffsetDateTime::now_utc();
    let mut big = checkpoint();
    big.replica = "r".repeat(MAX_MESSAGE_LEN);
    let refused = format_message(&big, now, "h", 1).unwrap_err();
    assert!(refused.to_string().contains("over 2048"), "{refused}");
    // The control: the same with a short replica id.
    assert!(format_message(&checkpoint(), now, "h", 1).is_ok());
}

#[test]
fn targets_are_unix_paths_or_udp_addresses() {
    for (spec, target) in [
        ("unix:/dev/log", SyslogTarget::Unix("/dev/log".into())),
        (
            "udp:127.0.0.1:514",
            SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()),
        ),
        (
            "udp:[::1]:5514",
            SyslogTarget::Udp("[::1]:5514".parse().unwrap()),
        ),
    ] {
        let parsed = SyslogTarget::parse(spec).unwrap();
        assert_eq!(parsed, target);
        assert_eq!(parsed.to_string(), spec);
    }
    for (spec, needle) in [
        ("/dev/log", "expected unix:"),
        ("tcp:127.0.0.1:514", "expected unix:"),
        ("unix:dev/log", "absolute"),
        ("unix:", "absolute"),
        ("udp:localhost:514", "IP address and a port"),
        ("udp:127.0.0.1", "IP address and a port"),
    ] {
        let error = SyslogTarget::parse(spec).unwrap_err().to_string();
        assert!(error.contains(needle), "{spec}: {error}");
        assert!(
            error.contains(&format!("{spec:?}")),
            "names the value: {error}"
        );
    }
}

/// Over UDP to a socket that listens, the datagram is the message; to a port nobody
/// listens on, a send fails once the "port unreachable" has come back (the socket is
/// connected), and the sender keeps going when it listens again.
#[tokio::test]
async fn udp_datagrams_arrive_and_an_unreachable_port_fails() {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = receiver.local_addr().unwrap();
    let mut anchor = SyslogAnchor::new(SyslogTarget::Udp(address));
    anchor.send(&checkpoint()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = receiver.recv(&mut buffer).await.unwrap();
    let text = std::str::from_utf8(&buffer[..n]).unwrap();
    assert!(text.starts_with("<85>1 "), "{text}");
    assert!(text.contains(" mayfly "), "{text}");
    let msg = text.split_once(" audit-checkpoint - ").unwrap().1;
    assert_eq!(
        serde_json::from_str::<SignedCheckpoint>(msg).unwrap(),
        checkpoint()
    );

    drop(receiver);
    // The first datagram to the closed port draws the ICMP answer; a later send reports it.
    let mut failed = None;
    for _ in 0..50 {
        if let Err(error) = anchor.send(&checkpoint()).await {
            failed = Some(error);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let failed = failed.expect("a send to a closed UDP port fails");
    assert!(
        failed.to_string().contains(&format!("udp:{address}")),
        "{failed}"
    );
}

/// A Unix socket nobody listens on fails at once; one that listens gets the message.
#[tokio::test]
async fn unix_datagrams_arrive_and_a_missing_socket_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let mut anchor = SyslogAnchor::new(SyslogTarget::Unix(path.clone()));
    let failed = anchor.send(&checkpoint()).await.unwrap_err();
    assert!(
        failed
            .to_string()
            .contains(&format!("unix:{}", path.display())),
        "{failed}"
    );

    let receiver = UnixDatagram::bind(&path).unwrap();
    anchor.send(&checkpoint()).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = receiver.recv(&mut buffer).await.unwrap();
    let text = std::str::from_utf8(&buffer[..n]).unwrap();
    assert!(text.starts_with("<85>1 "), "{text}");
    assert!(text.ends_with(&serde_json::to_string(&checkpoint()).unwrap()));
}
