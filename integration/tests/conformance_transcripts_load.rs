//! Loads every NetVSP conformance transcript, checks that it is self-consistent, and checks the
//! comparer against the transcripts themselves.
//!
//! The transcripts live in `../shared/conformance/netvsp` beside the repository (or
//! `$HVNET_CONFORMANCE_DIR`). If they are missing these tests fail; they never skip.

use std::collections::BTreeSet;
use std::path::Path;

use integration::conformance::{
    self, ComparePolicy, ConformanceError, Direction, EventKind, GpadlPurpose, HostAction,
    IgnoreRule, ObservedPacket, PacketRecord, Record, SCENARIOS, Transcript, compare,
};

fn all() -> Vec<Transcript> {
    conformance::load_all().unwrap_or_else(|e| panic!("{e}"))
}

fn scenario(name: &str) -> Transcript {
    conformance::load(name).unwrap_or_else(|e| panic!("{e}"))
}

fn packet(t: &Transcript, seq: usize) -> &PacketRecord {
    t.records[seq]
        .as_packet()
        .unwrap_or_else(|| panic!("{} seq {seq} is not a packet", t.name()))
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn transcripts_dir_exists() {
    let dir = conformance::transcripts_dir();
    assert!(
        dir.is_dir(),
        "conformance transcripts missing at {} (set HVNET_CONFORMANCE_DIR)",
        dir.display()
    );
    conformance::require_transcripts_dir().unwrap();
}

#[test]
fn missing_dir_is_a_loud_error() {
    let path = Path::new("/nonexistent/hvnet/conformance");
    let err = conformance::load_all_from(path).unwrap_err();
    assert!(
        matches!(err, ConformanceError::MissingDir { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/nonexistent/hvnet/conformance"),
        "{err}"
    );
    let err = conformance::load_from(path, "data-loopback").unwrap_err();
    assert!(
        matches!(err, ConformanceError::MissingDir { .. }),
        "{err:?}"
    );
}

#[test]
fn loads_all_29_scenarios_with_headers() {
    let all = all();
    let names: Vec<&str> = all.iter().map(Transcript::name).collect();
    assert_eq!(names, SCENARIOS);
    for t in &all {
        let stem = t.path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(t.header.scenario, stem);
        assert_eq!(t.header.record, "scenario");
        assert_eq!(t.header.openvmm_commit, "1488a37b7cfe");
        assert_eq!(t.header.host_config.mac, "00:15:5d:01:02:03");
        assert_eq!(
            t.header.host_config.vf_id.is_some(),
            stem.starts_with("vf-"),
            "{stem}"
        );
        assert_eq!(
            t.header.host_config.endpoint_tx_offloads,
            stem == "rndis-offload-caps",
            "{stem}"
        );
        let g = &t.header.guest_config;
        assert_eq!(g.poison_byte(), Some(0xee));
        assert_eq!(g.receive_buffer_id, 0xcafe);
        assert_eq!(
            (g.receive_buffer_bytes, g.send_buffer_bytes),
            (262_144, 131_072)
        );
        assert!(!t.records.is_empty(), "{stem} has no records");
        assert!(t.packets().count() > 0, "{stem} has no packets");
    }
}

#[test]
fn records_have_consecutive_seq_and_bookend_events() {
    for t in all() {
        for (i, r) in t.records.iter().enumerate() {
            assert_eq!(r.seq(), i as u64, "{}", t.name());
        }
        let first = t.records.first().and_then(Record::as_event).unwrap();
        assert!(
            matches!(first.kind, EventKind::Offer { .. }),
            "{}",
            t.name()
        );
        let last = t.records.last().and_then(Record::as_event).unwrap();
        assert!(matches!(last.kind, EventKind::End(_)), "{}", t.name());
    }
}

#[test]
fn packet_records_rebuild_consistently() {
    for t in all() {
        for p in t.packets() {
            let raw = p
                .raw_packet()
                .unwrap_or_else(|e| panic!("{}: {e}", t.name()));
            assert_eq!(raw.len(), usize::from(p.len8) * 8);
            assert_eq!(16 + p.ext.len(), usize::from(p.offset8) * 8);
            assert_eq!(u16::from_le_bytes([raw[0], raw[1]]), p.packet_type);
            assert_eq!(u64::from_le_bytes(raw[8..16].try_into().unwrap()), p.tid);
            let observed = ObservedPacket::from_raw(p.chan, &raw)
                .unwrap()
                .with_rxbuf(p.rxbuf.iter().map(|r| r.bytes.clone()).collect());
            assert_eq!(observed, ObservedPacket::from_record(p));
        }
    }
}

#[test]
fn raw_packet_reports_length_mismatches() {
    let t = scenario("handshake-0x60001");
    let mut p = packet(&t, 6).clone();
    p.len8 += 1;
    let err = p.raw_packet().unwrap_err();
    assert!(err.to_string().contains("len8"), "{err}");
    let mut p = packet(&t, 6).clone();
    p.offset8 = 3;
    let err = p.raw_packet().unwrap_err();
    assert!(err.to_string().contains("offset8"), "{err}");
}

#[test]
fn transfer_page_records_match_their_rxbuf() {
    let mut type7 = 0;
    for t in all() {
        for p in t.packets().filter(|p| p.packet_type == 7) {
            type7 += 1;
            assert_eq!(p.dir, Direction::H2g);
            let xfer = p.xfer.as_ref().unwrap();
            assert_eq!(xfer.transfer_page_set_id, 0xcafe);
            assert_eq!(xfer.range_count as usize, xfer.ranges.len());
            assert_eq!(p.rxbuf.len(), xfer.ranges.len());
            let decoded = ObservedPacket::from_record(p).transfer_ranges().unwrap();
            assert_eq!(&decoded, &xfer.ranges);
            for (i, (range, rx)) in xfer.ranges.iter().zip(&p.rxbuf).enumerate() {
                assert_eq!(rx.range, i);
                assert_eq!(
                    (rx.byte_offset, rx.byte_count),
                    (range.byte_offset, range.byte_count)
                );
                assert_eq!(rx.bytes.len(), rx.byte_count as usize);
                // Outside the significant spans is the guest's 0xEE poison.
                let mut significant = vec![false; rx.bytes.len()];
                for &(s, e) in &rx.significant {
                    significant[s..e].fill(true);
                }
                for (j, &b) in rx.bytes.iter().enumerate() {
                    assert!(
                        significant[j] || b == 0xee,
                        "{} seq {} rxbuf[{i}] byte {j}",
                        t.name(),
                        p.seq
                    );
                }
            }
        }
    }
    assert_eq!(type7, 80);
}

#[test]
fn ignore_entries_use_the_three_forms_and_resolve() {
    let mut forms = BTreeSet::new();
    let mut check = |name: &str, seq: u64, json: &serde_json::Value, rules: &[IgnoreRule]| {
        let written: Vec<&str> = json["ignore"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(written.len(), rules.len());
        for (text, rule) in written.iter().zip(rules) {
            let reparsed: IgnoreRule = text.parse().unwrap();
            assert_eq!(&reparsed, rule);
            assert_eq!(rule.to_string(), *text);
            rule.check_against(json)
                .unwrap_or_else(|e| panic!("{name} seq {seq}: {text}: {e}"));
            forms.insert(match rule {
                IgnoreRule::Field(_) => "field",
                IgnoreRule::Path(_) => "path",
                IgnoreRule::ByteMask { .. } => "mask",
            });
        }
    };
    for t in all() {
        for r in &t.records {
            match r {
                Record::Packet(p) => {
                    assert!(
                        p.ignore.contains(&IgnoreRule::Field("ring_pos".into())),
                        "{} seq {}: ring_pos is always ignored",
                        t.name(),
                        p.seq
                    );
                    check(t.name(), p.seq, &p.json, &p.ignore);
                }
                Record::Event(e) => {
                    let json = serde_json::Value::Object(e.fields.clone());
                    check(t.name(), e.seq, &json, &e.ignore);
                }
            }
        }
    }
    assert_eq!(
        forms,
        BTreeSet::from(["field", "mask", "path"]),
        "all three forms occur"
    );
}

/// The masks index bytes of the decoded field, not hex characters: `payload_hex[4:8]` is the
/// GPADL handle at NVSP offset 4, and each `ext_hex` mask of a GPA-direct packet is exactly one
/// 8-byte page number.
#[test]
fn byte_masks_index_bytes() {
    let mut masks = 0;
    for t in all() {
        let gpadl_for = |purpose: GpadlPurpose| {
            t.events()
                .find_map(|e| match &e.kind {
                    EventKind::Gpadl {
                        gpadl_id,
                        purpose: p,
                        ..
                    } if *p == purpose => Some(*gpadl_id),
                    _ => None,
                })
                .unwrap()
        };
        let (rx_gpadl, tx_gpadl) = (
            gpadl_for(GpadlPurpose::ReceiveBuffer),
            gpadl_for(GpadlPurpose::SendBuffer),
        );
        for p in t.packets() {
            for rule in &p.ignore {
                let IgnoreRule::ByteMask { field, start, end } = rule else {
                    continue;
                };
                masks += 1;
                match field.as_str() {
                    "payload_hex" => {
                        assert_eq!((*start, *end), (4, 8));
                        let handle = le_u32(&p.payload, 4);
                        match p.nvsp_type() {
                            Some(101) => assert_eq!(handle, rx_gpadl),
                            Some(104) => assert_eq!(handle, tx_gpadl),
                            other => panic!("{} seq {}: mask on NVSP {other:?}", t.name(), p.seq),
                        }
                    }
                    "ext_hex" => {
                        assert_eq!(end - start, 8);
                        let pfn = u64::from_le_bytes(p.ext[*start..*end].try_into().unwrap());
                        let gpa = p.gpa.as_ref().unwrap();
                        assert!(gpa.ranges.iter().any(|r| r.pfns.contains(&pfn)));
                    }
                    other => panic!("unexpected mask field {other}"),
                }
            }
        }
    }
    assert_eq!(masks, 59 + 6);
}

#[test]
fn events_have_typed_accessors() {
    for t in all() {
        for e in t.events() {
            assert!(
                !matches!(e.kind, EventKind::Other | EventKind::Timeout {}),
                "{} seq {}: untyped event {}",
                t.name(),
                e.seq,
                e.event
            );
        }
    }
    let actions = |name: &str| -> Vec<HostAction> {
        scenario(name)
            .events()
            .filter_map(|e| match &e.kind {
                EventKind::HostAction { action, .. } => Some(action.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        actions("vf-host-remove"),
        [HostAction::VfRemoved, HostAction::VfAvailable]
    );
    assert_eq!(
        actions("link-down-up"),
        [HostAction::LinkDown, HostAction::LinkUp]
    );
    assert_eq!(actions("link-same-state"), [HostAction::LinkUp]);

    let t = scenario("err-bad-section-index");
    let silences: Vec<u64> = t
        .events()
        .filter_map(|e| match e.kind {
            EventKind::Silence { waited_ms } => Some(waited_ms),
            _ => None,
        })
        .collect();
    assert_eq!(silences, [1000, 1500]);
    let bad = packet(&t, 20);
    let section = bad.section.as_ref().unwrap();
    assert_eq!(
        (section.index, section.size, &section.bytes),
        (1000, 60, &None)
    );

    let t = scenario("subchannels-4q");
    let offers: Vec<u16> = t
        .events()
        .filter_map(|e| match e.kind {
            EventKind::SubchannelOffer {
                subchannel_index, ..
            } => Some(subchannel_index),
            _ => None,
        })
        .collect();
    assert_eq!(offers, [1, 2, 3]);
    let opens: Vec<(u16, u32)> = t
        .events()
        .filter_map(|e| match e.kind {
            EventKind::Open {
                chan, target_vp, ..
            } => Some((chan, target_vp)),
            _ => None,
        })
        .collect();
    assert_eq!(opens, [(0, 0), (1, 1), (2, 2), (3, 3)]);
    let data_tids: Vec<(u16, u64)> = t
        .packets()
        .filter(|p| p.packet_type == 7 && p.rndis_channel_type() == Some(0))
        .map(|p| (p.chan, p.tid))
        .collect();
    assert_eq!(data_tids, [(0, 16), (1, 48), (2, 80), (3, 112)]);

    let t = scenario("err-unknown-nvsp-type");
    assert!(
        t.events()
            .any(|e| matches!(e.kind, EventKind::Close { chan: 0 }))
    );

    let t = scenario("vf-host-remove");
    let EventKind::End(end) = &t.events().last().unwrap().kind else {
        panic!("no end event");
    };
    assert_eq!(end.set_data_path_to_guest_vf_calls, [true, false]);
    assert_eq!(end.vf_guest_ready_for_device_calls, Some(1));

    // Event comparison drops ignored and informative fields.
    let gpadl = t.events().find(|e| e.event == "gpadl").unwrap();
    let c = gpadl.comparable();
    assert!(c.get("gpadl_id").is_none() && c.get("what").is_none() && c.get("seq").is_none());
    assert_eq!(c["pages"], 32);
    let headers = t
        .events()
        .find(|e| e.event == "ring_headers_after_open")
        .unwrap();
    let c = headers.comparable();
    assert!(c["guest_to_host_ring"].get("interrupt_mask").is_none());
    assert_eq!(c["host_to_guest_ring"]["feature_bits"], 1);
    assert_eq!(headers.chan(), Some(0));
}

/// Changes one descriptor field of an observed packet.
type Mutation = fn(&mut ObservedPacket);

fn ignored_bytes(p: &PacketRecord, field: &str) -> Vec<bool> {
    let len = if field == "ext_hex" {
        p.ext.len()
    } else {
        p.payload.len()
    };
    let mut bits = vec![false; len];
    for rule in &p.ignore {
        if let IgnoreRule::ByteMask {
            field: f,
            start,
            end,
        } = rule
            && f == field
        {
            bits[*start..*end].fill(true);
        }
    }
    bits
}

#[test]
fn comparer_passes_every_record_against_itself() {
    for t in all() {
        for p in t.packets() {
            let observed = ObservedPacket::from_record(p);
            for policy in [ComparePolicy::STRICT, ComparePolicy::RELAXED] {
                compare(p, &observed, &policy).unwrap_or_else(|m| panic!("{}: {m}", t.name()));
            }
        }
    }
}

#[test]
fn comparer_catches_every_unignored_byte_and_skips_ignored_ones() {
    let strict = ComparePolicy::STRICT;
    let (mut caught, mut skipped) = (0, 0);
    for t in all() {
        for p in t.packets() {
            let base = ObservedPacket::from_record(p);
            for field in ["ext_hex", "payload_hex"] {
                let ignored = ignored_bytes(p, field);
                for (i, &is_ignored) in ignored.iter().enumerate() {
                    let mut actual = base.clone();
                    let bytes = if field == "ext_hex" {
                        &mut actual.ext
                    } else {
                        &mut actual.payload
                    };
                    bytes[i] ^= 0x5a;
                    match compare(p, &actual, &strict) {
                        Ok(()) => {
                            assert!(is_ignored, "{} seq {} {field}[{i}]", t.name(), p.seq);
                            skipped += 1;
                        }
                        Err(m) => {
                            assert!(!is_ignored, "{} seq {}: {m}", t.name(), p.seq);
                            assert_eq!((m.field.as_str(), m.first_difference), (field, Some(i)));
                            assert_eq!(m.seq, p.seq);
                            assert!(m.to_string().contains(field), "{m}");
                            caught += 1;
                        }
                    }
                }
            }
            // A truncated payload is a mismatch too.
            if !p.payload.is_empty() {
                let mut actual = base.clone();
                actual.payload.pop();
                let m = compare(p, &actual, &strict).unwrap_err();
                assert_eq!(m.field, "payload_hex");
            }
            // Descriptor fields.
            let cases: [(&str, Mutation); 6] = [
                ("type", |o| o.packet_type ^= 2),
                ("chan", |o| o.chan += 1),
                ("flags", |o| o.flags ^= 1),
                ("tid", |o| o.tid ^= 1 << 40),
                ("offset8", |o| o.offset8 += 1),
                ("len8", |o| o.len8 += 1),
            ];
            for (field, mutate) in cases {
                let mut actual = base.clone();
                mutate(&mut actual);
                let m = compare(p, &actual, &strict).unwrap_err();
                assert_eq!((m.field.as_str(), m.first_difference), (field, None));
                assert!(m.to_string().contains(field), "{m}");
            }
        }
    }
    assert!(caught > 10_000, "{caught}");
    assert_eq!(skipped, 59 * 4 + 6 * 8);
}

#[test]
fn comparer_checks_rxbuf_only_within_significant_spans() {
    let strict = ComparePolicy::STRICT;
    for t in all() {
        for p in t.packets().filter(|p| p.packet_type == 7) {
            let base = ObservedPacket::from_record(p);
            for (r, rx) in p.rxbuf.iter().enumerate() {
                let mut significant = vec![false; rx.bytes.len()];
                for &(s, e) in &rx.significant {
                    significant[s..e].fill(true);
                }
                for (i, &sig) in significant.iter().enumerate() {
                    let mut actual = base.clone();
                    actual.rxbuf[r][i] ^= 0x01;
                    match compare(p, &actual, &strict) {
                        Ok(()) => assert!(!sig, "{} seq {} rxbuf[{r}][{i}]", t.name(), p.seq),
                        Err(m) => {
                            assert!(sig, "{m}");
                            assert_eq!(m.field, format!("rxbuf[{r}].hex"));
                            assert_eq!(m.first_difference, Some(i));
                        }
                    }
                }
                // A range cut short inside a significant span is a mismatch.
                let last_end = rx.significant.last().unwrap().1;
                let mut actual = base.clone();
                actual.rxbuf[r].truncate(last_end - 1);
                let m = compare(p, &actual, &strict).unwrap_err();
                assert_eq!(m.first_difference, Some(last_end - 1));
            }
            let mut actual = base.clone();
            actual.rxbuf.pop();
            assert_eq!(compare(p, &actual, &strict).unwrap_err().field, "rxbuf");
        }
    }
}

#[test]
fn policy_flags_control_host_policy_fields() {
    let strict = ComparePolicy::STRICT;
    // Control: RNDIS INITIALIZE_CMPLT in control buffer 15.
    let t = scenario("handshake-0x60001");
    let control = packet(&t, 18);
    assert_eq!(
        (control.packet_type, control.rndis_channel_type()),
        (7, Some(1))
    );
    assert_eq!(control.tid, 15);
    let mut other_buffer = ObservedPacket::from_record(control);
    other_buffer.tid = 3;
    other_buffer.ext[12..16].copy_from_slice(&(3 * 1806u32).to_le_bytes());
    assert_eq!(
        compare(control, &other_buffer, &strict).unwrap_err().field,
        "tid"
    );
    let no_control_tids = ComparePolicy {
        control_tids: false,
        ..strict
    };
    let m = compare(control, &other_buffer, &no_control_tids).unwrap_err();
    assert_eq!(
        (m.field.as_str(), m.first_difference),
        ("ext_hex", Some(12))
    );
    let lenient_control = ComparePolicy {
        control_byte_offsets: false,
        ..no_control_tids
    };
    compare(control, &other_buffer, &lenient_control).unwrap();
    // The data flags do not cover control packets.
    let data_only = ComparePolicy {
        data_tids: false,
        data_byte_offsets: false,
        data_byte_counts: false,
        ..strict
    };
    assert!(compare(control, &other_buffer, &data_only).is_err());

    // Data: a 60-byte frame received in sub-allocation 16.
    let t = scenario("data-loopback");
    let data = t
        .packets()
        .find(|p| p.packet_type == 7 && p.rndis_channel_type() == Some(0))
        .unwrap();
    assert_eq!(data.tid, 16);
    // Another host: sub-allocation 40 of 2048 bytes.
    let mut other_host = ObservedPacket::from_record(data);
    other_host.tid = 40;
    other_host.ext[8..12].copy_from_slice(&2048u32.to_le_bytes());
    other_host.ext[12..16].copy_from_slice(&(40 * 2048u32).to_le_bytes());
    other_host.rxbuf[0][4..8].copy_from_slice(&2048u32.to_le_bytes());
    other_host.rxbuf[0].resize(2048, 0xee);
    assert_eq!(
        compare(data, &other_host, &strict).unwrap_err().field,
        "tid"
    );
    compare(data, &other_host, &data_only).unwrap();
    for (flag, field) in [
        (
            ComparePolicy {
                data_tids: true,
                ..data_only
            },
            "tid",
        ),
        (
            ComparePolicy {
                data_byte_offsets: true,
                ..data_only
            },
            "ext_hex",
        ),
        (
            ComparePolicy {
                data_byte_counts: true,
                ..data_only
            },
            "ext_hex",
        ),
    ] {
        assert_eq!(compare(data, &other_host, &flag).unwrap_err().field, field);
    }
    // With counts unchecked, the RNDIS message_length is skipped but the frame is not.
    other_host.rxbuf[0][256] ^= 1;
    let m = compare(data, &other_host, &data_only).unwrap_err();
    assert_eq!(
        (m.field.as_str(), m.first_difference),
        ("rxbuf[0].hex", Some(256))
    );

    // Receive-buffer geometry in SEND_RECEIVE_BUFFER_COMPLETE.
    let t = scenario("handshake-0x60001");
    let complete = t
        .packets()
        .find(|p| p.packet_type == 11 && p.nvsp_type() == Some(102))
        .unwrap();
    assert_eq!(le_u32(&complete.payload, 20), 145);
    assert_eq!(le_u32(&complete.payload, 24), 261_870);
    let mut bigger = ObservedPacket::from_record(complete);
    bigger.payload[20..24].copy_from_slice(&290u32.to_le_bytes());
    bigger.payload[24..28].copy_from_slice(&523_740u32.to_le_bytes());
    let m = compare(complete, &bigger, &strict).unwrap_err();
    assert_eq!(
        (m.field.as_str(), m.first_difference),
        ("payload_hex", Some(20))
    );
    let no_geometry = ComparePolicy {
        receive_buffer_geometry: false,
        ..strict
    };
    compare(complete, &bigger, &no_geometry).unwrap();
    bigger.payload[16] ^= 1; // sub_allocation_size is still checked
    let m = compare(complete, &bigger, &no_geometry).unwrap_err();
    assert_eq!(m.first_difference, Some(16));
}

#[test]
fn mismatch_display_is_readable() {
    let t = scenario("data-loopback");
    let data = t.packets().find(|p| p.packet_type == 7).unwrap();
    let mut actual = ObservedPacket::from_record(data);
    actual.payload[4] = 0x07;
    let text = compare(data, &actual, &ComparePolicy::STRICT)
        .unwrap_err()
        .to_string();
    assert!(text.contains("`payload_hex` differs at byte 4"), "{text}");
    assert!(text.contains("expected: 6b000000 01000000"), "{text}");
    assert!(text.contains("actual:   6b000000 07000000"), "{text}");
    let caret = text.lines().last().unwrap();
    let expected_line = text.lines().nth(1).unwrap();
    assert_eq!(
        caret.find('^'),
        expected_line.find("01000000"),
        "caret under the byte:\n{text}"
    );
}

#[test]
fn ignore_parser_accepts_the_three_forms_only() {
    assert_eq!(
        "ring_pos".parse::<IgnoreRule>().unwrap(),
        IgnoreRule::Field("ring_pos".into())
    );
    assert!(matches!(
        "gpa.ranges[*].pfns".parse::<IgnoreRule>().unwrap(),
        IgnoreRule::Path(ref segs) if segs.len() == 3 && segs[1].each
    ));
    assert_eq!(
        "ext_hex[16:24]".parse::<IgnoreRule>().unwrap(),
        IgnoreRule::ByteMask {
            field: "ext_hex".into(),
            start: 16,
            end: 24
        }
    );
    for bad in ["", "x[8:4]", "x[*]", "a..b", "ext_hex[16:]", "a b"] {
        assert!(bad.parse::<IgnoreRule>().is_err(), "{bad:?}");
    }
}

#[test]
fn malformed_lines_name_the_file_and_line() {
    let t = scenario("data-loopback");
    let text = std::fs::read_to_string(&t.path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let with_line = |n: usize, replacement: &str| {
        let mut l = lines.clone();
        l[n - 1] = replacement;
        l.join("\n")
    };
    let expect_error = |text: String, line: usize, needle: &str| {
        let err = Transcript::parse(&t.path, &text).unwrap_err();
        match &err {
            ConformanceError::Malformed { line: l, .. } => assert_eq!(*l, line, "{err}"),
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("data-loopback.jsonl:{line}:")),
            "{msg}"
        );
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    };
    // Line 8 is seq 6, the first g2h packet.
    assert!(lines[7].contains(r#""seq":6,"dir":"g2h""#));
    expect_error(with_line(8, "{not json"), 8, "invalid JSON");
    expect_error(
        with_line(8, &lines[7].replace(r#""seq":6"#, r#""seq":7"#)),
        8,
        "seq 7",
    );
    expect_error(
        with_line(8, &lines[7].replace(r#""len8":7"#, r#""len8":8"#)),
        8,
        "len8",
    );
    expect_error(
        with_line(8, &lines[7].replace(r#""ring_pos"]"#, r#""ring_pos[0:4"]"#)),
        8,
        "ignore",
    );
    expect_error(
        with_line(
            8,
            &lines[7].replace(r#""ring_pos"]"#, r#""no_such_field"]"#),
        ),
        8,
        "no_such_field",
    );
    expect_error(
        with_line(8, &lines[7].replace(r#""tid":"0x"#, r#""tid":"1x"#)),
        8,
        "tid",
    );
    expect_error(with_line(1, lines[1]), 1, "header");
    // Unknown fields are tolerated.
    let extra = with_line(
        8,
        &lines[7].replace(r#""seq":6,"#, r#""seq":6,"future":1,"#),
    );
    Transcript::parse(&t.path, &extra).unwrap();
}
