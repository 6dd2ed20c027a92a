//! A reader of BTF, the kernel's own description of its types (`/sys/kernel/btf/vmlinux`).
//!
//! The format is the kernel's `Documentation/bpf/btf.rst`: a 24-byte (or longer) header, a type
//! section of variable-length records and a string section. Type ids start at 1; id 0 is `void`.
//!
//! The blob comes from a suspect machine, so every length, offset and reference is checked:
//! [`Btf::parse`] never panics and never allocates more than the blob's own size suggests, and
//! any defect is an error naming what is wrong and where.

use thiserror::Error;

/// `btf_header.magic` as a little-endian machine writes it.
pub const MAGIC: u16 = 0xeb9f;
const HEADER_MIN: usize = 24;
const TYPE_RECORD: usize = 12;

/// A BTF type id (index into [`Btf::types`] plus one; 0 is `void`).
pub type TypeId = u32;

/// Why a BTF blob was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF is {0} bytes: shorter than its 24-byte header (truncated?)")]
    TooShort(usize),
    #[error("not BTF: magic {0:#06x}, expected 0xeb9f")]
    BadMagic(u16),
    #[error("BTF is big-endian; only little-endian (x86_64) kernels are supported")]
    BigEndian,
    #[error("BTF version {0} is not supported (expected 1)")]
    BadVersion(u8),
    #[error("BTF header length {0} is invalid")]
    BadHeaderLength(u32),
    #[error(
        "BTF {section} section ({offset}+{len} bytes after the header) runs past the blob's end"
    )]
    SectionOutOfBounds {
        section: &'static str,
        offset: u32,
        len: u32,
    },
    #[error("BTF string section does not start with an empty string")]
    BadStringSection,
    #[error("BTF type {id}: record runs past the type section's end (truncated?)")]
    TruncatedType { id: TypeId },
    #[error("BTF type {id}: unknown kind {kind}")]
    UnknownKind { id: TypeId, kind: u8 },
    #[error("BTF type {id}: name offset {offset} is outside the string section")]
    BadName { id: TypeId, offset: u32 },
    #[error("BTF type {id} refers to type {target}, but there are only {count} types")]
    BadReference {
        id: TypeId,
        target: TypeId,
        count: usize,
    },
    #[error("BTF type {id}: {what}")]
    Invalid { id: TypeId, what: String },
}

/// One member of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Empty for an anonymous member.
    pub name: String,
    pub ty: TypeId,
    /// Offset from the start of the aggregate, in bits.
    pub bit_offset: u32,
    /// Width when the member is a bitfield declared with `kind_flag`; 0 otherwise.
    pub bitfield_size: u32,
}

/// One enumerator; BTF stores 32-bit (`ENUM`) and 64-bit (`ENUM64`) values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enumerator {
    pub name: String,
    /// The value as the enum's signedness reads its bits.
    pub value: i128,
}

/// What a type is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Int {
        size: u32,
        signed: bool,
        char: bool,
        bool: bool,
        /// Bit offset and width of the value inside `size` bytes (an old-style bitfield int).
        bit_offset: u8,
        bits: u8,
    },
    Ptr(TypeId),
    Array {
        elem: TypeId,
        count: u32,
    },
    Struct {
        size: u32,
        members: Vec<Member>,
    },
    Union {
        size: u32,
        members: Vec<Member>,
    },
    Enum {
        size: u32,
        signed: bool,
        values: Vec<Enumerator>,
    },
    /// A declaration without a definition (`struct foo;`).
    Fwd {
        union: bool,
    },
    Typedef(TypeId),
    Volatile(TypeId),
    Const(TypeId),
    Restrict(TypeId),
    TypeTag(TypeId),
    Func(TypeId),
    FuncProto,
    Var(TypeId),
    Datasec {
        vars: Vec<SecVar>,
    },
    Float {
        size: u32,
    },
    DeclTag(TypeId),
}

/// A variable of a data section (`DATASEC`): for vmlinux, the per-CPU variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecVar {
    pub var: TypeId,
    pub offset: u32,
    pub size: u32,
}

/// A named type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type {
    pub name: String,
    pub kind: Kind,
}

/// A parsed BTF blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Btf {
    types: Vec<Type>,
}

/// Little-endian reader over a byte slice that reports truncation instead of panicking.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn u32(&mut self) -> Option<u32> {
        let v = le32(self.bytes, self.at)?;
        self.at += 4;
        Some(v)
    }
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

fn section<'a>(
    data: &'a [u8],
    name: &'static str,
    offset: u32,
    len: u32,
) -> Result<&'a [u8], BtfError> {
    let err = BtfError::SectionOutOfBounds {
        section: name,
        offset,
        len,
    };
    let start = usize::try_from(offset).map_err(|_| err.clone())?;
    let end = start
        .checked_add(usize::try_from(len).map_err(|_| err.clone())?)
        .ok_or(err.clone())?;
    data.get(start..end).ok_or(err)
}

/// Reads the NUL-terminated string at `offset` of the string section.
fn string(strings: &[u8], id: TypeId, offset: u32) -> Result<String, BtfError> {
    let bad = BtfError::BadName { id, offset };
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|o| strings.get(o..))
        .ok_or(bad)?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(BtfError::BadName { id, offset })?;
    Ok(String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned())
}

impl Btf {
    /// Parses and checks a BTF blob.
    pub fn parse(blob: &[u8]) -> Result<Self, BtfError> {
        if blob.len() < HEADER_MIN {
            return Err(BtfError::TooShort(blob.len()));
        }
        let (Some(&m0), Some(&m1), Some(&version)) = (blob.first(), blob.get(1), blob.get(2))
        else {
            return Err(BtfError::TooShort(blob.len()));
        };
        let magic = u16::from_le_bytes([m0, m1]);
        if magic == MAGIC.swap_bytes() {
            return Err(BtfError::BigEndian);
        }
        if magic != MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        if version != 1 {
            return Err(BtfError::BadVersion(version));
        }
        let field = |at| le32(blob, at).ok_or(BtfError::TooShort(blob.len()));
        let hdr_len = field(4)?;
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let data = usize::try_from(hdr_len)
            .ok()
            .filter(|&h| h >= HEADER_MIN)
            .and_then(|h| blob.get(h..))
            .ok_or(BtfError::BadHeaderLength(hdr_len))?;
        let type_bytes = section(data, "type", type_off, type_len)?;
        let strings = section(data, "string", str_off, str_len)?;
        if strings.first().is_some_and(|&b| b != 0) {
            return Err(BtfError::BadStringSection);
        }

        let mut types = Vec::with_capacity(type_bytes.len() / TYPE_RECORD);
        let mut cur = Cursor {
            bytes: type_bytes,
            at: 0,
        };
        while cur.at < type_bytes.len() {
            let id = TypeId::try_from(types.len() + 1).map_err(|_| BtfError::Invalid {
                id: TypeId::MAX,
                what: "more than 2^32 types".into(),
            })?;
            types.push(read_type(&mut cur, strings, id)?);
        }
        let btf = Self { types };
        btf.check_references()?;
        Ok(btf)
    }

    /// All types; the type with id `n` is at index `n - 1`.
    pub fn types(&self) -> &[Type] {
        &self.types
    }

    /// The type with this id; `None` for `void` (0) and ids past the end.
    pub fn get(&self, id: TypeId) -> Option<&Type> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.types.get(index)
    }

    /// Ids and types, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (TypeId, &Type)> {
        (1..).zip(self.types.iter())
    }

    fn check_references(&self) -> Result<(), BtfError> {
        let count = self.types.len();
        let ok = |id: TypeId, target: TypeId| {
            if usize::try_from(target).is_ok_and(|t| t <= count) {
                Ok(())
            } else {
                Err(BtfError::BadReference { id, target, count })
            }
        };
        for (id, t) in self.iter() {
            match &t.kind {
                Kind::Ptr(to)
                | Kind::Typedef(to)
                | Kind::Volatile(to)
                | Kind::Const(to)
                | Kind::Restrict(to)
                | Kind::TypeTag(to)
                | Kind::Func(to)
                | Kind::Var(to)
                | Kind::DeclTag(to) => ok(id, *to)?,
                Kind::Array { elem, .. } => ok(id, *elem)?,
                Kind::Struct { members, .. } | Kind::Union { members, .. } => {
                    for m in members {
                        ok(id, m.ty)?;
                    }
                }
                Kind::Datasec { vars } => {
                    for v in vars {
                        ok(id, v.var)?;
                    }
                }
                Kind::Int { .. }
                | Kind::Enum { .. }
                | Kind::Fwd { .. }
                | Kind::FuncProto
                | Kind::Float { .. } => {}
            }
        }
        Ok(())
    }
}

fn read_type(cur: &mut Cursor<'_>, strings: &[u8], id: TypeId) -> Result<Type, BtfError> {
    let truncated = BtfError::TruncatedType { id };
    let name_off = cur.u32().ok_or(truncated.clone())?;
    let info = cur.u32().ok_or(truncated.clone())?;
    let size_or_type = cur.u32().ok_or(truncated.clone())?;
    let vlen = info & 0xffff;
    let kind_flag = info >> 31 == 1;
    let kind = u8::try_from((info >> 24) & 0x1f).unwrap_or(u8::MAX);
    let name = string(strings, id, name_off)?;
    let invalid = |what: String| BtfError::Invalid { id, what };
    // Every trailing record is at least 4 bytes: refuse a vlen the section cannot hold before
    // allocating for it.
    let remaining = cur.bytes.len().saturating_sub(cur.at);
    if usize::try_from(vlen).unwrap_or(usize::MAX) > remaining / 4 {
        return Err(truncated);
    }
    let mut next = || cur.u32().ok_or(BtfError::TruncatedType { id });
    let kind = match kind {
        1 => {
            let v = next()?;
            let encoding = (v >> 24) & 0x0f;
            let bit_offset = u8::try_from((v >> 16) & 0xff).unwrap_or(u8::MAX);
            let bits = u8::try_from(v & 0xff).unwrap_or(u8::MAX);
            if !matches!(size_or_type, 1 | 2 | 4 | 8 | 16) {
                return Err(invalid(format!("integer of {size_or_type} bytes")));
            }
            if u32::from(bit_offset) + u32::from(bits) > size_or_type * 8 || bits == 0 {
                return Err(invalid(format!(
                    "integer bits {bit_offset}+{bits} do not fit in {size_or_type} bytes"
                )));
            }
            Kind::Int {
                size: size_or_type,
                signed: encoding & 1 != 0,
                char: encoding & 2 != 0,
                bool: encoding & 4 != 0,
                bit_offset,
                bits,
            }
        }
        2 => Kind::Ptr(size_or_type),
        3 => {
            let elem = next()?;
            let _index_type = next()?;
            let count = next()?;
            Kind::Array { elem, count }
        }
        4 | 5 => {
            let mut members = Vec::with_capacity(usize::try_from(vlen).unwrap_or_default());
            for _ in 0..vlen {
                let m_name = string(strings, id, next()?)?;
                let ty = next()?;
                let offset = next()?;
                let (bit_offset, bitfield_size) = if kind_flag {
                    (offset & 0x00ff_ffff, offset >> 24)
                } else {
                    (offset, 0)
                };
                let end = u64::from(bit_offset) + u64::from(bitfield_size);
                if end > u64::from(size_or_type) * 8 {
                    return Err(invalid(format!(
                        "member {m_name:?} at bit {bit_offset} lies outside the {size_or_type}-byte aggregate"
                    )));
                }
                members.push(Member {
                    name: m_name,
                    ty,
                    bit_offset,
                    bitfield_size,
                });
            }
            if kind == 4 {
                Kind::Struct {
                    size: size_or_type,
                    members,
                }
            } else {
                Kind::Union {
                    size: size_or_type,
                    members,
                }
            }
        }
        6 | 19 => {
            if !matches!(size_or_type, 1 | 2 | 4 | 8) {
                return Err(invalid(format!("enum of {size_or_type} bytes")));
            }
            let mut values = Vec::with_capacity(usize::try_from(vlen).unwrap_or_default());
            for _ in 0..vlen {
                let e_name = string(strings, id, next()?)?;
                let value = if kind == 6 {
                    let raw = next()?;
                    if kind_flag {
                        i128::from(raw.cast_signed())
                    } else {
                        i128::from(raw)
                    }
                } else {
                    let lo = next()?;
                    let hi = next()?;
                    let raw = u64::from(hi) << 32 | u64::from(lo);
                    if kind_flag {
                        i128::from(raw.cast_signed())
                    } else {
                        i128::from(raw)
                    }
                };
                values.push(Enumerator {
                    name: e_name,
                    value,
                });
            }
            Kind::Enum {
                size: size_or_type,
                signed: kind_flag,
                values,
            }
        }
        7 => Kind::Fwd { union: kind_flag },
        8 => Kind::Typedef(size_or_type),
        9 => Kind::Volatile(size_or_type),
        10 => Kind::Const(size_or_type),
        11 => Kind::Restrict(size_or_type),
        12 => Kind::Func(size_or_type),
        13 => {
            for _ in 0..vlen {
                let _param_name = next()?;
                let _param_type = next()?;
            }
            Kind::FuncProto
        }
        14 => {
            let _linkage = next()?;
            Kind::Var(size_or_type)
        }
        15 => {
            let mut vars = Vec::with_capacity(usize::try_from(vlen).unwrap_or_default());
            for _ in 0..vlen {
                vars.push(SecVar {
                    var: next()?,
                    offset: next()?,
                    size: next()?,
                });
            }
            Kind::Datasec { vars }
        }
        16 => {
            if !matches!(size_or_type, 2 | 4 | 8 | 12 | 16) {
                return Err(invalid(format!("float of {size_or_type} bytes")));
            }
            Kind::Float { size: size_or_type }
        }
        17 => {
            let _component = next()?;
            Kind::DeclTag(size_or_type)
        }
        18 => Kind::TypeTag(size_or_type),
        other => return Err(BtfError::UnknownKind { id, kind: other }),
    };
    Ok(Type { name, kind })
}

#[cfg(any(test, feature = "testing"))]
pub(crate) mod testing {
    //! A small BTF writer for tests: the blobs the parser and the generator are tested with.

    /// Builds a BTF blob type by type; ids are returned in order, starting at 1.
    #[derive(Debug, Default)]
    pub struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let at = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            at
        }

        fn words(&mut self, words: &[u32]) {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }

        fn head(&mut self, name: &str, kind: u32, vlen: u32, flag: bool, size: u32) -> u32 {
            let n = self.name(name);
            self.words(&[n, u32::from(flag) << 31 | kind << 24 | vlen, size]);
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        pub fn int(&mut self, name: &str, size: u32, signed: bool) -> u32 {
            let id = self.head(name, 1, 0, false, size);
            self.words(&[(u32::from(signed) << 24) | (size * 8)]);
            id
        }

        pub fn char(&mut self, name: &str, signed: bool) -> u32 {
            let id = self.head(name, 1, 0, false, 1);
            self.words(&[(2 | u32::from(signed)) << 24 | 8]);
            id
        }

        pub fn ptr(&mut self, to: u32) -> u32 {
            self.head("", 2, 0, false, to)
        }

        pub fn array(&mut self, elem: u32, index: u32, count: u32) -> u32 {
            let id = self.head("", 3, 0, false, 0);
            self.words(&[elem, index, count]);
            id
        }

        /// Members: (name, type, bit offset, bitfield size); `kind_flag` is set when any member
        /// is a bitfield.
        pub fn composite(
            &mut self,
            union: bool,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            let flag = members.iter().any(|m| m.3 != 0);
            let vlen = u32::try_from(members.len()).unwrap_or(u32::MAX);
            let id = self.head(name, if union { 5 } else { 4 }, vlen, flag, size);
            for (m, ty, bit, bits) in members {
                let n = self.name(m);
                let off = if flag { bits << 24 | bit } else { *bit };
                self.words(&[n, *ty, off]);
            }
            id
        }

        pub fn structure(
            &mut self,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) -> u32 {
            self.composite(false, name, size, members)
        }

        pub fn enumeration(&mut self, name: &str, size: u32, values: &[(&str, i32)]) -> u32 {
            let vlen = u32::try_from(values.len()).unwrap_or(u32::MAX);
            let signed = values.iter().any(|v| v.1 < 0);
            let id = self.head(name, 6, vlen, signed, size);
            for (n, v) in values {
                let n = self.name(n);
                self.words(&[n, v.cast_unsigned()]);
            }
            id
        }

        pub fn fwd(&mut self, name: &str, union: bool) -> u32 {
            self.head(name, 7, 0, union, 0)
        }

        pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.head(name, 8, 0, false, to)
        }

        pub fn constant(&mut self, to: u32) -> u32 {
            self.head("", 10, 0, false, to)
        }

        pub fn func_proto(&mut self, ret: u32, params: &[u32]) -> u32 {
            let vlen = u32::try_from(params.len()).unwrap_or(u32::MAX);
            let id = self.head("", 13, vlen, false, ret);
            for p in params {
                self.words(&[0, *p]);
            }
            id
        }

        pub fn var(&mut self, name: &str, ty: u32) -> u32 {
            let id = self.head(name, 14, 0, false, ty);
            self.words(&[1]);
            id
        }

        pub fn datasec(&mut self, name: &str, size: u32, vars: &[(u32, u32, u32)]) -> u32 {
            let vlen = u32::try_from(vars.len()).unwrap_or(u32::MAX);
            let id = self.head(name, 15, vlen, false, size);
            for (v, off, sz) in vars {
                self.words(&[*v, *off, *sz]);
            }
            id
        }

        /// The blob: header, types, strings.
        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&super::MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let tl = u32::try_from(self.types.len()).unwrap_or(u32::MAX);
            let sl = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
            for w in [24, 0, tl, tl, sl] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Builder;
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let int = b.int("int", 4, true);
        let uint = b.int("unsigned int", 4, false);
        let ch = b.char("char", true);
        let s = b.fwd("task_struct", false);
        let p = b.ptr(s);
        let arr = b.array(ch, int, 16);
        b.structure(
            "task_struct",
            40,
            &[
                ("pid", int, 0, 0),
                ("flags", uint, 32, 3),
                ("parent", p, 64, 0),
                ("comm", arr, 128, 0),
            ],
        );
        b.enumeration(
            "pid_type",
            4,
            &[("PIDTYPE_PID", 0), ("PIDTYPE_MAX", 4), ("NEG", -1)],
        );
        let v = b.var("runqueues", int);
        b.datasec(".data..percpu", 4096, &[(v, 64, 4)]);
        b.build()
    }

    #[test]
    fn a_written_blob_reads_back() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.types().len(), 10);
        let t = btf.get(7).unwrap();
        assert_eq!(t.name, "task_struct");
        let Kind::Struct { size, members } = &t.kind else {
            panic!("{t:?}")
        };
        assert_eq!(*size, 40);
        assert_eq!(members[1].bitfield_size, 3);
        assert_eq!(members[3].bit_offset, 128);
        let Kind::Enum { values, signed, .. } = &btf.get(8).unwrap().kind else {
            panic!()
        };
        assert!(signed);
        assert_eq!(values[2].value, -1);
        assert!(matches!(
            btf.get(3).unwrap().kind,
            Kind::Int { char: true, .. }
        ));
        assert!(btf.get(0).is_none() && btf.get(11).is_none());
    }

    #[test]
    fn defects_are_named() {
        let good = sample();
        assert_eq!(Btf::parse(&good[..10]), Err(BtfError::TooShort(10)));
        let mut be = good.clone();
        be.swap(0, 1);
        assert_eq!(Btf::parse(&be), Err(BtfError::BigEndian));
        let mut v2 = good.clone();
        v2[2] = 2;
        assert_eq!(Btf::parse(&v2), Err(BtfError::BadVersion(2)));
        let cut = &good[..good.len() - 5];
        assert!(matches!(
            Btf::parse(cut),
            Err(BtfError::SectionOutOfBounds {
                section: "string",
                ..
            })
        ));
        // A pointer to type 99 of 10.
        let mut b = Builder::new();
        b.int("int", 4, true);
        b.ptr(99);
        assert_eq!(
            Btf::parse(&b.build()),
            Err(BtfError::BadReference {
                id: 2,
                target: 99,
                count: 2
            })
        );
        // A member beyond its struct.
        let mut b = Builder::new();
        let i = b.int("int", 4, true);
        b.structure("s", 4, &[("a", i, 0, 0), ("b", i, 64, 1)]);
        assert!(matches!(
            Btf::parse(&b.build()),
            Err(BtfError::Invalid { id: 2, .. })
        ));
    }

    #[test]
    fn this_machines_kernel_btf_parses_when_there_is_one() {
        // Not a fixture (it differs per machine), but any real kernel's BTF must parse.
        if let Ok(blob) = std::fs::read("/sys/kernel/btf/vmlinux") {
            let btf = Btf::parse(&blob).unwrap();
            assert!(btf.types().iter().any(|t| t.name == "task_struct"));
        }
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Btf::parse(&bytes);
        }

        #[test]
        fn mutated_blobs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16)) {
            let mut blob = sample();
            let n = blob.len();
            for (at, byte) in flips {
                blob[at % n] = byte;
            }
            let _ = Btf::parse(&blob);
        }

        #[test]
        fn truncation_is_an_error_not_a_panic(len in 0usize..200) {
            let blob = sample();
            if len < blob.len() {
                prop_assert!(Btf::parse(&blob[..len]).is_err());
            }
        }
    }
}
