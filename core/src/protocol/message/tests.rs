use super::*;
use proptest::prelude::*;

fn sample(topic: &str, body: &'static [u8], props: &str) -> MessageExt {
    MessageExt {
        topic: ByteString::from(topic),
        flag: 7,
        body: Bytes::from_static(body),
        properties: Properties::parse(ByteString::from(props)),
        queue_id: 3,
        queue_offset: 100,
        commit_log_offset: 0x1234,
        sys_flag: 0,
        born_timestamp: 1_732_500_000_000,
        born_host: "10.0.0.5:54321".parse().unwrap(),
        store_timestamp: 1_732_500_000_100,
        store_host: "192.168.0.1:10911".parse().unwrap(),
        reconsume_times: 2,
        prepared_transaction_offset: 0,
        body_crc: body_crc(body),
        store_size: 0,
        version: MessageVersion::V1,
    }
}

fn stored(msgs: &[MessageExt]) -> (Bytes, Vec<MessageExt>) {
    let mut out = BytesMut::new();
    let mut want = Vec::new();
    for m in msgs {
        let start = out.len();
        encode_stored(m, &mut out).unwrap();
        let mut m = m.clone();
        m.store_size = (out.len() - start) as i32;
        want.push(m);
    }
    (out.freeze(), want)
}

#[test]
fn decodes_what_it_encodes_with_zero_copy_slices() {
    let a = sample(
        "TopicTest",
        b"hello",
        "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}",
    );
    let mut b = sample("T", b"", "");
    b.version = MessageVersion::V2;
    b.store_host = "[fe80::1]:10911".parse().unwrap();
    b.sys_flag = sys_flag::STORE_HOST_V6;
    let (body, want) = stored(&[a, b]);
    let got = decode_messages(&body, &DecodeOptions::default()).unwrap();
    assert_eq!(got, want);
    let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
    assert!(range.contains(&(got[0].body.as_ptr() as usize)));
    assert!(range.contains(&(got[0].topic.as_bytes().as_ptr() as usize)));
    assert_eq!(got[0].tags(), Some("TagA"));
    assert_eq!(got[0].keys().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(got[0].offset_msg_id(), "C0A8000100002A9F0000000000001234");
    assert_eq!(got[0].msg_id(), got[0].offset_msg_id());
    assert_eq!(got[1].offset_msg_id().len(), 56);
}

#[test]
fn compressed_bodies_are_inflated_and_crc_checked() {
    let plain: &'static [u8] = &[b'x'; 10_000];
    for t in [
        CompressionType::Zlib,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ] {
        let mut m = sample("T", b"", "");
        m.body = t.compress(plain, 5).unwrap();
        m.body_crc = body_crc(&m.body);
        m.sys_flag = t.sys_flag();
        let (body, _) = stored(&[m.clone()]);
        let opts = DecodeOptions {
            verify_crc: true,
            ..DecodeOptions::default()
        };
        let got = decode_message(&body, &opts).unwrap();
        assert_eq!(&got.body[..], plain, "{t:?}");
        assert!(got.was_compressed());
        let raw = decode_message(
            &body,
            &DecodeOptions {
                decompress: false,
                ..opts.clone()
            },
        )
        .unwrap();
        assert_eq!(raw.body, m.body);
        let small = DecodeOptions {
            max_body_len: 9_999,
            ..opts.clone()
        };
        assert!(matches!(
            decode_message(&body, &small),
            Err(MessageError::Compression {
                source: CompressError::TooLarge { .. },
                ..
            })
        ));
        m.body_crc ^= 1;
        let (body, _) = stored(&[m]);
        assert!(matches!(
            decode_message(&body, &opts),
            Err(MessageError::BodyCrc { .. })
        ));
    }
}

#[test]
fn inner_batches_are_unwrapped() {
    let inner = [
        Message::new("T", &b"one"[..]).with_tags("a"),
        Message::new("T", &b""[..]),
        Message::new("T", &b"three"[..]).with_keys(["k"]),
    ];
    let mut batch = BytesMut::new();
    encode_batch(&inner, &mut batch).unwrap();
    let mut outer = sample("T", b"", "INNER_NUM\u{1}3\u{2}");
    outer.body = batch.freeze();
    outer.sys_flag = sys_flag::INNER_BATCH | sys_flag::NEED_UNWRAP;
    let plain = sample("T", b"after", "");
    let (body, _) = stored(&[outer, plain]);
    let got = decode_messages(&body, &DecodeOptions::default()).unwrap();
    assert_eq!(got.len(), 4);
    for (i, m) in got[..3].iter().enumerate() {
        assert_eq!(m.queue_offset, 100 + i as i64);
        assert_eq!(m.body, inner[i].body);
        assert_eq!(m.properties.to_map(), inner[i].properties);
        assert_eq!(m.sys_flag & sys_flag::NEED_UNWRAP, 0);
    }
    assert_eq!(&got[3].body[..], b"after");
}

#[test]
fn properties_parse_like_java() {
    let cases: [(&str, &[(&str, &str)]); 7] = [
        ("", &[]),
        ("a\u{1}1\u{2}b\u{1}2\u{2}", &[("a", "1"), ("b", "2")]),
        ("a\u{1}1\u{2}b\u{1}2", &[("a", "1"), ("b", "2")]),
        ("\u{1}x\u{2}k\u{1}\u{2}ok\u{1}v\u{2}", &[("ok", "v")]),
        ("noseparator\u{2}\u{2}\u{2}", &[]),
        ("a\u{1}1\u{2}a\u{1}2\u{2}", &[("a", "2")]),
        ("k\u{1}v\u{1}w\u{2}", &[("k", "v\u{1}w")]),
    ];
    for (raw, want) in cases {
        let p = Properties::parse(ByteString::from(raw));
        assert_eq!(p.iter().collect::<Vec<_>>(), want.to_vec(), "{raw:?}");
    }
}

#[test]
fn bad_record_table() {
    let (good, _) = stored(&[sample("TopicTest", b"body", "a\u{1}b\u{2}")]);
    let patch = |at: usize, bytes: &[u8]| {
        let mut v = good.to_vec();
        v[at..at + bytes.len()].copy_from_slice(bytes);
        Bytes::from(v)
    };
    let n = good.len();
    // Field positions for IPv4 hosts: born port at 52, body length at 84, body at
    // 88 (4 bytes), topic length at 92.
    let cases: Vec<(&str, Bytes, MessageError)> = vec![
        (
            "cut in first field",
            good.slice(..3),
            MessageError::Truncated { offset: 0 },
        ),
        (
            "total size past end",
            good.slice(..n - 1),
            MessageError::BadTotalSize {
                offset: 0,
                size: n as i32,
                remaining: n - 1,
            },
        ),
        (
            "negative total size",
            patch(0, &(-1i32).to_be_bytes()),
            MessageError::BadTotalSize {
                offset: 0,
                size: -1,
                remaining: n,
            },
        ),
        (
            "bad magic",
            patch(4, &0x1234_5678i32.to_be_bytes()),
            MessageError::BadMagic {
                offset: 0,
                magic: 0x1234_5678,
            },
        ),
        (
            "body length past record",
            patch(84, &1000i32.to_be_bytes()),
            MessageError::BadLength {
                offset: 0,
                field: "body",
                len: 1000,
            },
        ),
        (
            "negative body length",
            patch(84, &(-4i32).to_be_bytes()),
            MessageError::BadLength {
                offset: 0,
                field: "body",
                len: -4,
            },
        ),
        (
            "body shorter than declared record",
            patch(84, &3i32.to_be_bytes()),
            // The topic length is now read from the body's last byte, b'y'.
            MessageError::BadLength {
                offset: 0,
                field: "topic",
                len: 121,
            },
        ),
        (
            "invalid utf-8 topic",
            patch(93, &[0xFF]),
            MessageError::InvalidUtf8 {
                offset: 0,
                field: "topic",
            },
        ),
        (
            "negative port",
            patch(52, &(-1i32).to_be_bytes()),
            MessageError::BadPort {
                offset: 0,
                port: -1,
            },
        ),
    ];
    for (name, input, want) in cases {
        assert_eq!(
            decode_messages(&input, &DecodeOptions::default()),
            Err(want),
            "{name}"
        );
    }
    // A record whose fields end before its declared size.
    let mut padded = good.to_vec();
    padded.push(0);
    padded[..4].copy_from_slice(&((n + 1) as i32).to_be_bytes());
    assert_eq!(
        decode_messages(&Bytes::from(padded), &DecodeOptions::default()),
        Err(MessageError::LengthMismatch {
            offset: 0,
            declared: n as i32 + 1,
            actual: n
        })
    );
    // A second record's error names its own position.
    let mut two = good.to_vec();
    two.extend_from_slice(&good[..10]);
    assert_eq!(
        decode_messages(&Bytes::from(two), &DecodeOptions::default()),
        Err(MessageError::BadTotalSize {
            offset: n,
            size: n as i32,
            remaining: 10
        })
    );
}

#[test]
fn offset_msg_id_parses_back() {
    let host: SocketAddr = "192.168.0.1:10911".parse().unwrap();
    let id = offset_msg_id(host, 0x1234);
    assert_eq!(id, "C0A8000100002A9F0000000000001234");
    assert_eq!(parse_offset_msg_id(&id), Some((host, 0x1234)));
    assert_eq!(parse_offset_msg_id("C0A80001"), None);
    assert_eq!(parse_offset_msg_id("ZZ"), None);
}

#[test]
fn unique_ids_follow_the_java_layout() {
    let mut g = UniqueIdGenerator::new("127.0.0.1".parse().unwrap(), 0x0D2C, 0x18B4_AAC2);
    // 2024-11-25T02:00:00Z: 24 days and 2 hours into the month.
    let now = 1_732_500_000_000;
    let id = g.next_id(now);
    assert_eq!(id.len(), 32);
    assert_eq!(&id[..20], "7F0000010D2C18B4AAC2");
    let since_month = (now - 1_730_419_200_000) as u32; // 2024-11-01T00:00:00Z
    assert_eq!(&id[20..28], format!("{since_month:08X}"));
    assert_eq!(&id[28..], "0000");
    assert_eq!(&g.next_id(now)[28..], "0001");
    assert_eq!(month_bounds_utc(0), (0, 31 * 86_400_000));
    assert_eq!(month_bounds_utc(1_709_251_199_999).1, 1_709_251_200_000); // leap February 2024
}

fn arb_props() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map(
        "[A-Za-z_][A-Za-z0-9_ .:-]{0,12}",
        "[^\u{1}\u{2}]{1,24}",
        0..6,
    )
    .prop_map(|m| m.into_iter().collect())
}

prop_compose! {
    fn arb_message()(
        topic in "[%|a-zA-Z0-9_-]{1,200}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
        props in arb_props(),
        queue_id in any::<i32>(),
        flag in any::<i32>(),
        queue_offset in any::<i64>(),
        commit_log_offset in any::<i64>(),
        sys_flag in any::<i32>(),
        born in any::<(i64, [u8; 16], u16, bool)>(),
        store in any::<(i64, [u8; 4], u16)>(),
        reconsume_times in any::<i32>(),
        prepared in any::<i64>(),
    ) -> MessageExt {
        let mut raw = String::new();
        encode_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut raw);
        let born_ip: IpAddr = if born.3 { Ipv6Addr::from(born.1).into() } else { Ipv4Addr::new(born.1[0], born.1[1], born.1[2], born.1[3]).into() };
        // Compression and inner-batch flags change how the body is read; keep the
        // rest of the sys flag arbitrary.
        let sys_flag = sys_flag & !(sys_flag::COMPRESSED | sys_flag::INNER_BATCH | sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6)
            | if born.3 { sys_flag::BORN_HOST_V6 } else { 0 };
        let version = if topic.len() > 127 { MessageVersion::V2 } else { MessageVersion::V1 };
        MessageExt {
            topic: ByteString::from(topic),
            flag,
            body_crc: body_crc(&body),
            body: Bytes::from(body),
            properties: Properties::parse(ByteString::from(raw)),
            queue_id,
            queue_offset,
            commit_log_offset,
            sys_flag,
            born_timestamp: born.0,
            born_host: SocketAddr::new(born_ip, born.2),
            store_timestamp: store.0,
            store_host: SocketAddr::new(Ipv4Addr::from(store.1).into(), store.2),
            reconsume_times,
            prepared_transaction_offset: prepared,
            store_size: 0,
            version,
        }
    }
}

proptest! {
    #[test]
    fn stored_round_trip(msgs in proptest::collection::vec(arb_message(), 0..8)) {
        let (body, want) = stored(&msgs);
        let opts = DecodeOptions { verify_crc: true, ..DecodeOptions::default() };
        prop_assert_eq!(decode_messages(&body, &opts).unwrap(), want);
    }

    #[test]
    fn batch_round_trip(entries in proptest::collection::vec((any::<i32>(), proptest::collection::vec(any::<u8>(), 0..200), arb_props()), 0..8)) {
        let msgs: Vec<Message> = entries.iter().map(|(flag, body, props)| {
            let mut m = Message::new("T", body.clone());
            m.flag = *flag;
            m.properties = props.iter().cloned().collect();
            m
        }).collect();
        let mut out = BytesMut::new();
        encode_batch(&msgs, &mut out).unwrap();
        let got = decode_batch(&out.freeze()).unwrap();
        prop_assert_eq!(got.len(), msgs.len());
        for (g, m) in got.iter().zip(&msgs) {
            prop_assert_eq!(g.flag, m.flag);
            prop_assert_eq!(&g.body, &m.body);
            prop_assert_eq!(&g.properties.to_map(), &m.properties);
        }
    }

    #[test]
    fn properties_round_trip(props in arb_props()) {
        let mut raw = String::new();
        encode_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())), &mut raw);
        let parsed = Properties::parse(ByteString::from(raw));
        prop_assert_eq!(parsed.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>(), props);
    }

    #[test]
    fn lookups_agree_with_a_full_parse(raw in "[ab\u{1}\u{2}é]{0,40}") {
        let p = Properties::parse(ByteString::from(raw.as_str()));
        let map = p.to_map();
        for name in ["a", "b", "ab", "ba", "aa", "é", "aé"] {
            prop_assert_eq!(p.get(name), map.get(name).map(String::as_str), "{:?} in {:?}", name, raw);
        }
        prop_assert_eq!(p.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<BTreeMap<_, _>>(), map.clone());
        prop_assert_eq!(p.len(), map.len());
        prop_assert_eq!(p.is_empty(), map.is_empty());
    }

    #[test]
    fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_messages(&Bytes::from(data.clone()), &DecodeOptions::default());
        let _ = decode_batch(&Bytes::from(data));
    }
}
