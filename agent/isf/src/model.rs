//! The Intermediate Symbol Format (ISF) JSON that Volatility 3 reads, as Rust types.
//!
//! The shapes follow Volatility's `schemas/schema-6.2.0.json` (and 6.3.0, which only adds that
//! `producer.name` and `producer.version` are required). Maps are `BTreeMap`s so the same inputs
//! give the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The ISF format version written.
pub const FORMAT: &str = "6.2.0";

/// A whole symbol table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isf {
    pub metadata: Metadata,
    pub base_types: BTreeMap<String, BaseType>,
    pub user_types: BTreeMap<String, UserType>,
    pub enums: BTreeMap<String, EnumType>,
    pub symbols: BTreeMap<String, Symbol>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format: String,
    pub producer: Producer,
    pub linux: LinuxMetadata,
}

/// Who made the file, and from what (`inputs` is airf's addition; the schema allows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    pub name: String,
    pub version: String,
    pub inputs: Vec<InputRecord>,
}

/// One input file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// What the file is: `btf`, `kallsyms`, `vmcoreinfo` or `banner`.
    pub kind: String,
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinuxMetadata {
    /// The symbol source, in the schema's words (`system-map`: kallsyms has its format).
    pub symbols: Vec<SourceRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub kind: String,
    pub name: String,
    pub hash_type: String,
    pub hash_value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseType {
    pub size: u32,
    pub signed: bool,
    /// `int`, `char`, `bool`, `float` or `void`.
    pub kind: String,
    pub endian: String,
}

impl BaseType {
    pub fn little(size: u32, signed: bool, kind: &str) -> Self {
        Self {
            size,
            signed,
            kind: kind.to_owned(),
            endian: "little".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserType {
    /// `struct` or `union`.
    pub kind: String,
    pub size: u32,
    pub fields: BTreeMap<String, Field>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    #[serde(rename = "type")]
    pub ty: Desc,
    pub offset: u32,
    /// A member without a name whose own members Volatility lifts into this type.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnumType {
    pub size: u32,
    /// A name in `base_types`.
    pub base: String,
    pub constants: BTreeMap<String, i128>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Symbol {
    pub address: u64,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<Desc>,
    /// Base64 of the bytes at the symbol (the banner, so Volatility can pick this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constant_data: Option<String>,
}

/// A type descriptor (`type_descriptor` in the schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Desc {
    Base {
        name: String,
    },
    Pointer {
        subtype: Box<Desc>,
    },
    Array {
        count: u32,
        subtype: Box<Desc>,
    },
    Struct {
        name: String,
    },
    Union {
        name: String,
    },
    Enum {
        name: String,
    },
    Function,
    Bitfield {
        bit_position: u32,
        bit_length: u32,
        #[serde(rename = "type")]
        ty: Box<Desc>,
    },
}

impl Desc {
    pub fn base(name: &str) -> Self {
        Self::Base {
            name: name.to_owned(),
        }
    }
}
