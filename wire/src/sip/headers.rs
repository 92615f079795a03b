//! Header-name classification: full and compact forms (RFC 3261 §7.3.3 and later RFCs) map to
//! one id, so lookups compare a byte instead of re-comparing names case-insensitively.

use crate::scan::eq_ic;

/// Identity of a header the scanner knows by name.
///
/// Known headers are classified once while scanning; a lookup by name then matches compact and
/// full forms alike (`i` finds `Call-ID`). Everything else is [`HeaderId::Other`] and is
/// looked up by case-insensitive name comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub enum HeaderId {
    #[default]
    Other,
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Date,
    Supported,
    Subject,
    ContentEncoding,
    Event,
    ReferTo,
    AllowEvents,
    SessionExpires,
    ReferredBy,
    Identity,
    AcceptContact,
    RejectContact,
    RequestDisposition,
}

impl HeaderId {
    /// Classifies a header name, accepting any case and the compact forms
    /// `i v f t m l c k s e o r u x b y a j d`.
    pub fn classify(name: &[u8]) -> HeaderId {
        use HeaderId::*;
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'i' => CallId,
                b'v' => Via,
                b'f' => From,
                b't' => To,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'k' => Supported,
                b's' => Subject,
                b'e' => ContentEncoding,
                b'o' => Event,
                b'r' => ReferTo,
                b'u' => AllowEvents,
                b'x' => SessionExpires,
                b'b' => ReferredBy,
                b'y' => Identity,
                b'a' => AcceptContact,
                b'j' => RejectContact,
                b'd' => RequestDisposition,
                _ => Other,
            };
        }
        let cands: &[(&[u8], HeaderId)] = match name.len() {
            2 => &[(b"to", To)],
            3 => &[(b"via", Via)],
            4 => &[(b"from", From), (b"cseq", CSeq), (b"date", Date)],
            5 => &[(b"route", Route), (b"event", Event)],
            7 => &[
                (b"call-id", CallId),
                (b"contact", Contact),
                (b"subject", Subject),
            ],
            8 => &[(b"refer-to", ReferTo), (b"identity", Identity)],
            9 => &[(b"supported", Supported)],
            11 => &[(b"referred-by", ReferredBy)],
            12 => &[
                (b"max-forwards", MaxForwards),
                (b"content-type", ContentType),
                (b"record-route", RecordRoute),
                (b"allow-events", AllowEvents),
            ],
            14 => &[
                (b"content-length", ContentLength),
                (b"accept-contact", AcceptContact),
                (b"reject-contact", RejectContact),
            ],
            15 => &[(b"session-expires", SessionExpires)],
            16 => &[(b"content-encoding", ContentEncoding)],
            19 => &[(b"request-disposition", RequestDisposition)],
            _ => &[],
        };
        for (n, id) in cands {
            if eq_ic(name, n) {
                return *id;
            }
        }
        Other
    }

    /// The full header name, used when builders emit a header the scanner classified.
    pub fn canonical_name(self) -> &'static str {
        use HeaderId::*;
        match self {
            Other => "",
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            Contact => "Contact",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            Route => "Route",
            RecordRoute => "Record-Route",
            Date => "Date",
            Supported => "Supported",
            Subject => "Subject",
            ContentEncoding => "Content-Encoding",
            Event => "Event",
            ReferTo => "Refer-To",
            AllowEvents => "Allow-Events",
            SessionExpires => "Session-Expires",
            ReferredBy => "Referred-By",
            Identity => "Identity",
            AcceptContact => "Accept-Contact",
            RejectContact => "Reject-Contact",
            RequestDisposition => "Request-Disposition",
        }
    }
}

/// One header line as found in the message: raw name and value, both slices of the input.
///
/// The value is trimmed of surrounding white space but otherwise raw: folded continuation
/// lines keep their CRLF + indentation, because un-folding would need a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// What the name classified as (compact and full forms give the same id).
    pub id: HeaderId,
    /// The name as written (`v`, `VIA`, ...).
    pub name: &'a [u8],
    /// The trimmed value.
    pub value: &'a [u8],
}
