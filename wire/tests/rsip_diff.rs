//! Differential test against `rsip` (a full-parse SIP library) on the RFC 4475 valid set:
//! where rsip parses a message, both must agree on Call-ID, CSeq, top-Via branch and tags.

mod common;
use common::corpus;

use rsip::prelude::*;
use wire::sip::Message;
use wire::Limits;

/// Valid torture messages rsip 0.4 cannot handle (checked below to still fail, so the list
/// stays honest when rsip improves):
const RSIP_KNOWN_FAILURES: &[&str] = &[
    "wsinv.dat",   // folded / LWS-padded headers: "failed to tokenize version"
    "intmeth.dat", // exotic method and URI characters: tokenizer error
    "esc01.dat",   // escaped Request-URI user part: tokenizer error
    "esc02.dat",   // %-escaped extension method: "invalid method"
    "longreq.dat", // long folded values and compact forms: tokenizer error
    "dblreq.dat",  // compact `I:` Call-ID not recognised: "missing header: CallID"
    "semiuri.dat", // `;` in the URI user part: tokenizer error
];

struct Fields {
    call_id: String,
    seq: u32,
    method: String,
    branch: Option<String>,
    from_tag: Option<String>,
    to_tag: Option<String>,
}

fn rsip_fields(data: &[u8]) -> Result<Fields, String> {
    let msg = rsip::SipMessage::try_from(data).map_err(|e| format!("parse: {e}"))?;
    let e = |e: rsip::Error| e.to_string();
    let call_id = msg.call_id_header().map_err(e)?.value().to_string();
    let cseq = msg.cseq_header().map_err(e)?.typed().map_err(e)?;
    let via = msg.via_header().map_err(e)?.typed().map_err(e)?;
    let from = msg.from_header().map_err(e)?.typed().map_err(e)?;
    let to = msg.to_header().map_err(e)?.typed().map_err(e)?;
    Ok(Fields {
        call_id,
        seq: cseq.seq,
        method: cseq.method.to_string(),
        branch: via.branch().map(|b| b.to_string()),
        from_tag: from.tag().map(|t| t.to_string()),
        to_tag: to.tag().map(|t| t.to_string()),
    })
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn rsip_agrees_on_valid_corpus() {
    let mut compared = 0;
    let mut failed = Vec::new();
    for (file, class, data) in corpus() {
        if class != "valid" {
            continue;
        }
        let file = file.as_str();
        let ours = Message::parse(&data, &Limits::default()).unwrap();
        match rsip_fields(&data) {
            Ok(f) => {
                assert!(
                    !RSIP_KNOWN_FAILURES.contains(&file),
                    "{file} now parses in rsip: drop it from the list"
                );
                assert_eq!(f.call_id, s(ours.call_id()), "{file} Call-ID");
                assert_eq!(f.seq, ours.cseq().seq, "{file} CSeq");
                assert_eq!(
                    f.method,
                    s(ours.cseq().method.as_bytes()),
                    "{file} CSeq method"
                );
                assert_eq!(f.branch, ours.top_via().branch().map(s), "{file} branch");
                assert_eq!(
                    f.from_tag,
                    ours.from().and_then(|x| x.tag).map(s),
                    "{file} From tag"
                );
                assert_eq!(
                    f.to_tag,
                    ours.to().and_then(|x| x.tag).map(s),
                    "{file} To tag"
                );
                compared += 1;
            }
            Err(e) => {
                eprintln!("rsip fails on {file}: {e}");
                failed.push(file.to_string());
            }
        }
    }
    let mut known: Vec<String> = RSIP_KNOWN_FAILURES.iter().map(|s| s.to_string()).collect();
    known.sort();
    failed.sort();
    assert_eq!(
        failed, known,
        "rsip failures differ from the documented list"
    );
    assert!(compared >= 3, "too few messages compared ({compared})");
}
