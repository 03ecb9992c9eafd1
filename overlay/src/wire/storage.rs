//! Store and Fetch bodies (RFC 6940 §7.4.1, §7.4.2) and the stored-data structures they
//! carry (§6.3.4's `Signature`, §7.2's data models).
//!
//! Which data model a Kind uses comes from the overlay configuration, never from the wire,
//! and the layout of `StoredData` and `StoredDataSpecifier` depends on it. So the bodies
//! that hold them parse with a `models: Fn(KindId) -> Option<DataModel>` lookup; a Kind the
//! lookup does not know is [`WireError::UnknownKind`]. [`StoreReq::kinds`] and
//! [`FetchReq::kinds`] list the Kinds of a request without any lookup, so that the
//! receiver can answer Error_Unknown_Kind with all of them. Emitting needs no lookup: each
//! value says its model by its variant (a value whose variant disagrees with its Kind's
//! model emits fine but parses back differently or not at all).

use super::security::Signature;
use super::{
    reader, Decode, Encode, NodeId, ReadExt, Reader, ResourceId, Sink, WireError, WriteExt,
};

/// A Kind-ID: 32 bits.
pub type KindId = u32;

/// How a Kind stores its values (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataModel {
    Single,
    Array,
    Dictionary,
}

/// `DataValue`: `exists` false marks a deleted value (§7.4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataValue {
    pub exists: bool,
    /// `opaque<0..2^32-1>`, the usage's value (e.g. a SipRegistration).
    pub value: Vec<u8>,
}

/// `StoredDataValue`: one value of a single-value, array or dictionary Kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredDataValue {
    Single(DataValue),
    /// `ArrayEntry`; index `0xffffffff` in a Store means "append".
    Array {
        index: u32,
        value: DataValue,
    },
    /// `DictionaryEntry`; the key is `opaque<0..2^16-1>`.
    Dictionary {
        key: Vec<u8>,
        value: DataValue,
    },
}

impl StoredDataValue {
    /// The model this value's layout belongs to.
    pub fn model(&self) -> DataModel {
        match self {
            StoredDataValue::Single(_) => DataModel::Single,
            StoredDataValue::Array { .. } => DataModel::Array,
            StoredDataValue::Dictionary { .. } => DataModel::Dictionary,
        }
    }

    /// The `DataValue` inside, whatever the model.
    pub fn data(&self) -> &DataValue {
        match self {
            StoredDataValue::Single(v)
            | StoredDataValue::Array { value: v, .. }
            | StoredDataValue::Dictionary { value: v, .. } => v,
        }
    }

    fn read(r: &mut Reader<'_>, model: DataModel) -> Result<Self, WireError> {
        Ok(match model {
            DataModel::Single => StoredDataValue::Single(DataValue::read(r)?),
            DataModel::Array => StoredDataValue::Array {
                index: r.u32()?,
                value: DataValue::read(r)?,
            },
            DataModel::Dictionary => StoredDataValue::Dictionary {
                key: r.opaque(2)?.to_vec(),
                value: DataValue::read(r)?,
            },
        })
    }
}

/// `StoredData`: a value with its times and its creator's signature. The leading `length`
/// is computed on emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredData {
    /// Milliseconds since 1970-01-01 UTC; newer replaces older.
    pub storage_time: u64,
    /// Seconds, counted from when the storing peer received it.
    pub lifetime: u32,
    pub value: StoredDataValue,
    pub signature: Signature,
}

impl StoredData {
    /// Parses one `StoredData` of a Kind with this model.
    pub fn parse(bytes: &[u8], model: DataModel) -> Result<StoredData, WireError> {
        let mut r = reader(bytes);
        let v = StoredData::read(&mut r, model)?;
        r.finish()?;
        Ok(v)
    }

    fn read(r: &mut Reader<'_>, model: DataModel) -> Result<Self, WireError> {
        let mut r = r.sub(4)?;
        let v = StoredData {
            storage_time: r.u64()?,
            lifetime: r.u32()?,
            value: StoredDataValue::read(&mut r, model)?,
            signature: Signature::read(&mut r)?,
        };
        r.finish()?;
        Ok(v)
    }

    /// The bytes the value's creator signs (§7.1): `resource_id ‖ kind ‖ storage_time ‖
    /// StoredDataValue ‖ SignerIdentity`. Our reading of the gaps: `resource_id` as encoded,
    /// *with* its length byte (it is a `ResourceId`, and the RFC's other signature input
    /// takes structures as encoded); for arrays the index is written as zero, so that an
    /// append (index 0xffffffff) verifies wherever it lands.
    pub fn signed_bytes(&self, resource: &ResourceId, kind: KindId) -> Vec<u8> {
        let zeroed;
        let value = match &self.value {
            StoredDataValue::Array { value, .. } => {
                zeroed = StoredDataValue::Array {
                    index: 0,
                    value: value.clone(),
                };
                &zeroed
            }
            v => v,
        };
        let mut v = resource.to_bytes();
        v.extend_from_slice(&kind.to_be_bytes());
        v.extend_from_slice(&self.storage_time.to_be_bytes());
        v.extend_from_slice(&value.encode_vec());
        v.extend_from_slice(&self.signature.identity.to_bytes());
        v
    }
}

/// `StoreKindData`: the values of one Kind in a Store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKindData {
    pub kind: KindId,
    /// 0 = don't care; otherwise must equal the stored counter.
    pub generation: u64,
    pub values: Vec<StoredData>,
}

/// `StoreReq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReq {
    pub resource: ResourceId,
    /// 0 for the original store, 1 and 2 for CHORD-RELOAD's replicas.
    pub replica_number: u8,
    pub kind_data: Vec<StoreKindData>,
}

/// `StoreKindResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKindResponse {
    pub kind: KindId,
    pub generation: u64,
    pub replicas: Vec<NodeId>,
}

/// `StoreAns` (also the `error_info` of Error_Generation_Counter_Too_Low).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreAns {
    pub kind_responses: Vec<StoreKindResponse>,
}

/// `ArrayRange`: inclusive, `0xffffffff` = the last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayRange {
    pub first: u32,
    pub last: u32,
}

/// What a `StoredDataSpecifier` selects, by the Kind's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Single,
    Array(Vec<ArrayRange>),
    /// An empty list means every key.
    Dictionary(Vec<Vec<u8>>),
}

/// `StoredDataSpecifier`: one Kind to fetch and which of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataSpecifier {
    pub kind: KindId,
    /// If equal to the stored counter, the answer carries no values.
    pub generation: u64,
    pub selector: Selector,
}

/// `FetchReq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReq {
    pub resource: ResourceId,
    pub specifiers: Vec<StoredDataSpecifier>,
}

/// `FetchKindResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchKindResponse {
    pub kind: KindId,
    pub generation: u64,
    pub values: Vec<StoredData>,
}

/// `FetchAns`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchAns {
    pub kind_responses: Vec<FetchKindResponse>,
}

/// The model of `kind`, or `UnknownKind`.
fn model_of(
    kind: KindId,
    models: &dyn Fn(KindId) -> Option<DataModel>,
) -> Result<DataModel, WireError> {
    models(kind).ok_or(WireError::UnknownKind(kind))
}

/// Kind, generation and the values of one Kind, as in `StoreKindData` and
/// `FetchKindResponse`.
fn read_kind_values(
    r: &mut Reader<'_>,
    models: &dyn Fn(KindId) -> Option<DataModel>,
) -> Result<(KindId, u64, Vec<StoredData>), WireError> {
    let kind = r.u32()?;
    let generation = r.u64()?;
    let model = model_of(kind, models)?;
    let values = r.list_with(4, |r| StoredData::read(r, model))?;
    Ok((kind, generation, values))
}

impl StoreReq {
    /// Parses a Store body; `models` gives each Kind's data model.
    pub fn parse(
        bytes: &[u8],
        models: impl Fn(KindId) -> Option<DataModel>,
    ) -> Result<StoreReq, WireError> {
        let mut r = reader(bytes);
        let req = StoreReq {
            resource: ResourceId::read(&mut r)?,
            replica_number: r.u8()?,
            kind_data: r.list_with(4, |r| {
                read_kind_values(r, &models).map(|(kind, generation, values)| StoreKindData {
                    kind,
                    generation,
                    values,
                })
            })?,
        };
        r.finish()?;
        Ok(req)
    }

    /// The Kinds of a Store body in order, without parsing values (no model needed).
    pub fn kinds(bytes: &[u8]) -> Result<Vec<KindId>, WireError> {
        let mut r = reader(bytes);
        ResourceId::read(&mut r)?;
        r.u8()?;
        let kinds = r.list_with(4, |r| {
            let kind = r.u32()?;
            r.u64()?;
            r.opaque(4)?;
            Ok(kind)
        })?;
        r.finish()?;
        Ok(kinds)
    }
}

impl FetchReq {
    /// Parses a Fetch body; `models` gives each Kind's data model.
    pub fn parse(
        bytes: &[u8],
        models: impl Fn(KindId) -> Option<DataModel>,
    ) -> Result<FetchReq, WireError> {
        let mut r = reader(bytes);
        let req = FetchReq {
            resource: ResourceId::read(&mut r)?,
            specifiers: r.list_with(2, |r| StoredDataSpecifier::read(r, &models))?,
        };
        r.finish()?;
        Ok(req)
    }

    /// The Kinds of a Fetch body in order, without a model lookup.
    pub fn kinds(bytes: &[u8]) -> Result<Vec<KindId>, WireError> {
        let mut r = reader(bytes);
        ResourceId::read(&mut r)?;
        let kinds = r.list_with(2, |r| {
            let kind = r.u32()?;
            r.u64()?;
            r.opaque(2)?;
            Ok(kind)
        })?;
        r.finish()?;
        Ok(kinds)
    }
}

impl FetchAns {
    /// Parses a Fetch answer body; `models` gives each Kind's data model.
    pub fn parse(
        bytes: &[u8],
        models: impl Fn(KindId) -> Option<DataModel>,
    ) -> Result<FetchAns, WireError> {
        let mut r = reader(bytes);
        let ans = FetchAns {
            kind_responses: r.list_with(4, |r| {
                read_kind_values(r, &models).map(|(kind, generation, values)| FetchKindResponse {
                    kind,
                    generation,
                    values,
                })
            })?,
        };
        r.finish()?;
        Ok(ans)
    }
}

impl StoredDataSpecifier {
    fn read(
        r: &mut Reader<'_>,
        models: &dyn Fn(KindId) -> Option<DataModel>,
    ) -> Result<Self, WireError> {
        let kind = r.u32()?;
        let generation = r.u64()?;
        let model = model_of(kind, models)?;
        let mut part = r.sub(2)?;
        let selector = match model {
            DataModel::Single => Selector::Single,
            DataModel::Array => Selector::Array(part.list(2)?),
            DataModel::Dictionary => {
                Selector::Dictionary(part.list_with(2, |r| r.opaque(2).map(<[u8]>::to_vec))?)
            }
        };
        part.finish()?;
        Ok(StoredDataSpecifier {
            kind,
            generation,
            selector,
        })
    }
}

impl Decode for DataValue {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(DataValue {
            exists: r.boolean()?,
            value: r.opaque(4)?.to_vec(),
        })
    }
}

impl Encode for DataValue {
    fn write(&self, w: &mut dyn Sink) {
        w.boolean(self.exists);
        w.opaque(4, &self.value);
    }
}

impl Encode for StoredDataValue {
    fn write(&self, w: &mut dyn Sink) {
        match self {
            StoredDataValue::Single(v) => v.write(w),
            StoredDataValue::Array { index, value } => {
                w.u32(*index);
                value.write(w);
            }
            StoredDataValue::Dictionary { key, value } => {
                w.opaque(2, key);
                value.write(w);
            }
        }
    }
}

impl Encode for StoredData {
    fn write(&self, w: &mut dyn Sink) {
        w.nested(4, &|w| {
            w.u64(self.storage_time);
            w.u32(self.lifetime);
            self.value.write(w);
            self.signature.write(w);
        });
    }
}

impl Encode for StoreKindData {
    fn write(&self, w: &mut dyn Sink) {
        w.u32(self.kind);
        w.u64(self.generation);
        w.list(4, &self.values);
    }
}

impl Encode for StoreReq {
    fn write(&self, w: &mut dyn Sink) {
        self.resource.write(w);
        w.u8(self.replica_number);
        w.list(4, &self.kind_data);
    }
}

impl Decode for StoreKindResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(StoreKindResponse {
            kind: r.u32()?,
            generation: r.u64()?,
            replicas: r.list(2)?,
        })
    }
}

impl Encode for StoreKindResponse {
    fn write(&self, w: &mut dyn Sink) {
        w.u32(self.kind);
        w.u64(self.generation);
        w.list(2, &self.replicas);
    }
}

impl Decode for StoreAns {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(StoreAns {
            kind_responses: r.list(2)?,
        })
    }
}

impl Encode for StoreAns {
    fn write(&self, w: &mut dyn Sink) {
        w.list(2, &self.kind_responses);
    }
}

impl Decode for ArrayRange {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ArrayRange {
            first: r.u32()?,
            last: r.u32()?,
        })
    }
}

impl Encode for ArrayRange {
    fn write(&self, w: &mut dyn Sink) {
        w.u32(self.first);
        w.u32(self.last);
    }
}

impl Encode for StoredDataSpecifier {
    fn write(&self, w: &mut dyn Sink) {
        w.u32(self.kind);
        w.u64(self.generation);
        w.nested(2, &|w| match &self.selector {
            Selector::Single => {}
            Selector::Array(ranges) => w.list(2, ranges),
            Selector::Dictionary(keys) => {
                w.nested(2, &|w| keys.iter().for_each(|k| w.opaque(2, k)));
            }
        });
    }
}

impl Encode for FetchReq {
    fn write(&self, w: &mut dyn Sink) {
        self.resource.write(w);
        w.list(2, &self.specifiers);
    }
}

impl Encode for FetchKindResponse {
    fn write(&self, w: &mut dyn Sink) {
        w.u32(self.kind);
        w.u64(self.generation);
        w.list(4, &self.values);
    }
}

impl Encode for FetchAns {
    fn write(&self, w: &mut dyn Sink) {
        w.list(4, &self.kind_responses);
    }
}

repr_methods!(DataValue);
repr_methods!(encode StoredData);
repr_methods!(encode StoreReq);
repr_methods!(StoreAns);
repr_methods!(encode FetchReq);
repr_methods!(encode FetchAns);

#[cfg(test)]
pub(super) mod tests {
    use super::super::security::tests::v2_signature;
    use super::super::security::{HashAlgorithm, SignerIdentity};
    use super::super::testutil::{both_ways, hex, mutate};
    use super::*;

    /// Kind 1 (SIP-REGISTRATION) is a dictionary, 3 (CERTIFICATE_BY_NODE) an array, 2
    /// (TURN-SERVICE) a single value; nothing else is known.
    pub fn models(kind: KindId) -> Option<DataModel> {
        match kind {
            1 => Some(DataModel::Dictionary),
            2 => Some(DataModel::Single),
            3 => Some(DataModel::Array),
            _ => None,
        }
    }

    /// Node-ID 2001:2a:1:203:405:607:809:a0b of vector V2.
    pub fn v2_node() -> NodeId {
        NodeId(hex("2001002a000102030405060708090a0b").try_into().unwrap())
    }

    /// Resource-ID of "alice@example.com" (digest §8.2).
    pub fn alice() -> ResourceId {
        ResourceId(hex("fc2398a73dd54d6237c4fdb58fd7d753"))
    }

    /// V2's StoreReq body (207 bytes): one SIP-REGISTRATION dictionary entry keyed by the
    /// Node-ID, a route registration (SipRegistration type 2) kept opaque.
    pub fn v2_store() -> (Vec<u8>, StoreReq) {
        let mut bytes = hex("10 fc2398a73dd54d6237c4fdb58fd7d753 | 00 | 000000b9
             00000001 | 0000000000000000 | 000000a9
             000000a5 | 0000018bcfe56800 | 00000e10
             0010 2001002a000102030405060708090a0b
             01 00000019 02 0016 0000 0012 01 10 2001002a000102030405060708090a0b");
        bytes.extend_from_slice(&v2_signature().0);
        let sip_route = hex("02 0016 0000 0012 01 10 2001002a000102030405060708090a0b");
        let req = StoreReq {
            resource: alice(),
            replica_number: 0,
            kind_data: vec![StoreKindData {
                kind: 1,
                generation: 0,
                values: vec![StoredData {
                    storage_time: 1_700_000_000_000,
                    lifetime: 3600,
                    value: StoredDataValue::Dictionary {
                        key: v2_node().0.to_vec(),
                        value: DataValue {
                            exists: true,
                            value: sip_route,
                        },
                    },
                    signature: v2_signature().1,
                }],
            }],
        };
        (bytes, req)
    }

    /// A Store with an array entry and a single value, both deleted/anonymous.
    fn mixed_store() -> (Vec<u8>, StoreReq) {
        let bytes = hex("00 | 02 | 0000005d
             00000003 0000000000000007 00000020
               0000001c 0000000000000001 00000000 ffffffff 00 00000000 | 0000 03 0000 0000
             00000002 ffffffffffffffff 0000001d
               00000019 0000000000000002 0000003c 01 00000001 aa | 0000 03 0000 0000");
        let anon = Signature::anonymous();
        let req = StoreReq {
            resource: ResourceId(vec![]),
            replica_number: 2,
            kind_data: vec![
                StoreKindData {
                    kind: 3,
                    generation: 7,
                    values: vec![StoredData {
                        storage_time: 1,
                        lifetime: 0,
                        value: StoredDataValue::Array {
                            index: u32::MAX,
                            value: DataValue {
                                exists: false,
                                value: vec![],
                            },
                        },
                        signature: anon.clone(),
                    }],
                },
                StoreKindData {
                    kind: 2,
                    generation: u64::MAX,
                    values: vec![StoredData {
                        storage_time: 2,
                        lifetime: 60,
                        value: StoredDataValue::Single(DataValue {
                            exists: true,
                            value: vec![0xaa],
                        }),
                        signature: anon,
                    }],
                },
            ],
        };
        (bytes, req)
    }

    fn store_parse(b: &[u8]) -> Result<StoreReq, WireError> {
        StoreReq::parse(b, models)
    }

    fn fetch_parse(b: &[u8]) -> Result<FetchReq, WireError> {
        FetchReq::parse(b, models)
    }

    fn fetch_ans_parse(b: &[u8]) -> Result<FetchAns, WireError> {
        FetchAns::parse(b, models)
    }

    fn fetch_req() -> (Vec<u8>, FetchReq) {
        let bytes = hex("10 fc2398a73dd54d6237c4fdb58fd7d753 | 0044
             00000001 0000000000000000 0008 | 0006 0002 abcd 0000
             00000003 0000000000000005 0012 | 0010 00000000 00000003 0000000a ffffffff
             00000002 0000000000000000 0000");
        let req = FetchReq {
            resource: alice(),
            specifiers: vec![
                StoredDataSpecifier {
                    kind: 1,
                    generation: 0,
                    selector: Selector::Dictionary(vec![hex("abcd"), vec![]]),
                },
                StoredDataSpecifier {
                    kind: 3,
                    generation: 5,
                    selector: Selector::Array(vec![
                        ArrayRange { first: 0, last: 3 },
                        ArrayRange {
                            first: 10,
                            last: u32::MAX,
                        },
                    ]),
                },
                StoredDataSpecifier {
                    kind: 2,
                    generation: 0,
                    selector: Selector::Single,
                },
            ],
        };
        (bytes, req)
    }

    /// A Fetch answer returning V2's value, plus an empty response for kind 2.
    fn fetch_ans() -> (Vec<u8>, FetchAns) {
        let (store_bytes, store) = v2_store();
        // StoreKindData and FetchKindResponse share their layout: reuse V2's kind data.
        let kind_data = &store_bytes[22..];
        let mut bytes = hex("000000c9");
        bytes.extend_from_slice(kind_data);
        bytes.extend_from_slice(&hex("00000002 0000000000000009 00000000"));
        let data = &store.kind_data[0];
        let ans = FetchAns {
            kind_responses: vec![
                FetchKindResponse {
                    kind: data.kind,
                    generation: data.generation,
                    values: data.values.clone(),
                },
                FetchKindResponse {
                    kind: 2,
                    generation: 9,
                    values: vec![],
                },
            ],
        };
        (bytes, ans)
    }

    #[test]
    fn v2_store_body_both_ways() {
        let (bytes, req) = v2_store();
        assert_eq!(bytes.len(), 207);
        both_ways(&bytes, &req, store_parse, StoreReq::to_bytes);
        assert_eq!(StoreReq::kinds(&bytes), Ok(vec![1]));
    }

    #[test]
    fn mixed_store_both_ways() {
        let (bytes, req) = mixed_store();
        both_ways(&bytes, &req, store_parse, StoreReq::to_bytes);
        assert_eq!(StoreReq::kinds(&bytes), Ok(vec![3, 2]));
    }

    #[test]
    fn unknown_kinds_are_reported_and_listed() {
        let (mut bytes, _) = mixed_store();
        // Kind 2 → 0x104 (ReDiR, not configured here).
        bytes[6 + 48..][..4].copy_from_slice(&[0, 0, 1, 4]);
        assert_eq!(store_parse(&bytes), Err(WireError::UnknownKind(0x104)));
        assert_eq!(StoreReq::kinds(&bytes), Ok(vec![3, 0x104]));
        let (fetch, _) = fetch_req();
        assert_eq!(
            FetchReq::parse(&fetch, |_| None),
            Err(WireError::UnknownKind(1))
        );
        assert_eq!(FetchReq::kinds(&fetch), Ok(vec![1, 3, 2]));
    }

    #[test]
    fn fetch_both_ways() {
        let (bytes, req) = fetch_req();
        both_ways(&bytes, &req, fetch_parse, FetchReq::to_bytes);
        let (bytes, ans) = fetch_ans();
        both_ways(&bytes, &ans, fetch_ans_parse, FetchAns::to_bytes);
        both_ways(
            &hex("00000000"),
            &FetchAns::default(),
            fetch_ans_parse,
            FetchAns::to_bytes,
        );
    }

    #[test]
    fn selector_must_match_the_model() {
        // A single-value specifier with selector bytes.
        let bytes = hex("00 0010 00000002 0000000000000000 0002 0000");
        assert_eq!(fetch_parse(&bytes), Err(WireError::TrailingBytes));
        // An array range list that is not a multiple of 8 bytes.
        let bytes = hex("00 0012 00000003 0000000000000000 0004 0002 0000");
        assert_eq!(fetch_parse(&bytes), Err(WireError::Truncated));
    }

    #[test]
    fn store_answer_both_ways() {
        let ans = StoreAns {
            kind_responses: vec![StoreKindResponse {
                kind: 1,
                generation: 2,
                replicas: vec![v2_node()],
            }],
        };
        let bytes = hex("001e 00000001 0000000000000002 0010 2001002a000102030405060708090a0b");
        both_ways(&bytes, &ans, StoreAns::parse, StoreAns::to_bytes);
        both_ways(
            &hex("0000"),
            &StoreAns::default(),
            StoreAns::parse,
            StoreAns::to_bytes,
        );
    }

    #[test]
    fn stored_data_alone_and_its_signature_input() {
        let (bytes, req) = v2_store();
        let data = &req.kind_data[0].values[0];
        let encoded = &bytes[38..];
        assert_eq!(
            StoredData::parse(encoded, DataModel::Dictionary).as_ref(),
            Ok(data)
        );
        assert_eq!(data.to_bytes(), encoded);
        assert_eq!(data.buffer_len(), 169);
        // Read as a single value, the key's length byte is `exists` and the value length
        // that follows runs far past the input.
        assert_eq!(
            StoredData::parse(encoded, DataModel::Single),
            Err(WireError::Truncated)
        );

        // resource_id with its length byte, kind, time, the dictionary entry, the identity.
        let mut expected = hex("10 fc2398a73dd54d6237c4fdb58fd7d753 00000001 0000018bcfe56800");
        expected.extend_from_slice(&bytes[38 + 16..38 + 16 + 48]);
        expected.extend_from_slice(&hex("01 0022 04 20"));
        expected.extend_from_slice(&[0; 32]);
        assert_eq!(data.signed_bytes(&alice(), 1), expected);

        // Array indices are zeroed before signing.
        let (_, mixed) = mixed_store();
        let appended = &mixed.kind_data[0].values[0];
        let signed = appended.signed_bytes(&ResourceId(vec![]), 3);
        assert_eq!(
            signed,
            hex("00 00000003 0000000000000001 00000000 00 00000000 03 0000")
        );
    }

    #[test]
    fn deleted_value_with_cert_hash_identity() {
        let data = StoredData {
            storage_time: 5,
            lifetime: 10,
            value: StoredDataValue::Single(DataValue {
                exists: false,
                value: vec![],
            }),
            signature: Signature {
                identity: SignerIdentity::CertHash {
                    hash: HashAlgorithm::Sha256,
                    digest: vec![1; 32],
                },
                ..v2_signature().1
            },
        };
        let bytes = data.to_bytes();
        assert_eq!(
            StoredData::parse(&bytes, DataModel::Single),
            Ok(data.clone())
        );
        for len in 0..bytes.len() {
            assert!(StoredData::parse(&bytes[..len], DataModel::Single).is_err());
        }
    }

    #[test]
    fn random_mutations_of_store_and_fetch() {
        let seeds = vec![v2_store().0, mixed_store().0];
        let parsed = mutate(&seeds, 10_000, 0x0ddb_a11d, store_parse, StoreReq::to_bytes);
        assert!(parsed > 500 && parsed < 9000, "{parsed}");
        let seeds = vec![fetch_req().0];
        let parsed = mutate(&seeds, 5000, 0x00c0_ffee, fetch_parse, FetchReq::to_bytes);
        assert!(parsed > 100 && parsed < 4500, "{parsed}");
        let seeds = vec![fetch_ans().0];
        let parsed = mutate(&seeds, 5000, 0xf00d, fetch_ans_parse, FetchAns::to_bytes);
        assert!(parsed > 100 && parsed < 4500, "{parsed}");
    }
}
