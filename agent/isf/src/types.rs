//! BTF types as ISF `base_types`, `user_types` and `enums`, and the descriptors that refer to
//! them.
//!
//! ISF has no typedefs or qualifiers: `typedef`, `const`, `volatile`, `restrict` and type tags
//! are looked through, as dwarf2json does. Structs and unions are referred to by name; a name
//! used by two different BTF types gets `__btf<id>` on the second so no reference goes to the
//! wrong layout, and types without a name get `unnamed_<kind>_<id>`.

use std::collections::{BTreeMap, HashMap};

use crate::IsfError;
use crate::btf::{Btf, Kind, TypeId};
use crate::model::{BaseType, Desc, EnumType, Field, UserType};

/// Typedef and qualifier chains longer than this are refused: real kernels nest a handful,
/// and a hostile blob could loop forever.
const MAX_CHAIN: usize = 64;

/// Size of a pointer on x86_64.
const POINTER_SIZE: u32 = 8;

/// The base type an enum of this size and signedness is read as.
fn enum_base(size: u32, signed: bool) -> &'static str {
    match (size, signed) {
        (1, false) => "unsigned char",
        (1, true) => "signed char",
        (2, false) => "short unsigned int",
        (2, true) => "short int",
        (4, false) => "unsigned int",
        (4, true) => "int",
        (_, false) => "long long unsigned int",
        (_, true) => "long long int",
    }
}

/// Names given to BTF types, and the converted tables.
#[derive(Debug, Default)]
pub struct Types {
    pub base_types: BTreeMap<String, BaseType>,
    pub user_types: BTreeMap<String, UserType>,
    pub enums: BTreeMap<String, EnumType>,
    /// ISF name of each INT, FLOAT, STRUCT, UNION, FWD and ENUM id.
    names: HashMap<TypeId, String>,
}

fn claim(taken: &mut HashMap<String, TypeId>, wanted: &str, id: TypeId, unnamed: &str) -> String {
    let name = if wanted.is_empty() {
        format!("unnamed_{unnamed}_{id}")
    } else {
        wanted.to_owned()
    };
    if taken.contains_key(&name) {
        let unique = format!("{name}__btf{id}");
        taken.insert(unique.clone(), id);
        unique
    } else {
        taken.insert(name.clone(), id);
        name
    }
}

impl Types {
    /// Converts every type of `btf`.
    pub fn convert(btf: &Btf) -> Result<Self, IsfError> {
        let mut t = Self::default();
        t.name_all(btf)?;
        for (id, ty) in btf.iter() {
            match &ty.kind {
                Kind::Struct { size, members } | Kind::Union { size, members } => {
                    let kind = if matches!(ty.kind, Kind::Union { .. }) {
                        "union"
                    } else {
                        "struct"
                    };
                    let fields = t.fields(btf, id, members)?;
                    let name = t.name_of(id)?.to_owned();
                    t.user_types.insert(
                        name,
                        UserType {
                            kind: kind.to_owned(),
                            size: *size,
                            fields,
                        },
                    );
                }
                Kind::Enum {
                    size,
                    signed,
                    values,
                } => {
                    let base = enum_base(*size, *signed);
                    t.require_base(base, *size, *signed)?;
                    let name = t.name_of(id)?.to_owned();
                    t.enums.insert(
                        name,
                        EnumType {
                            size: *size,
                            base: base.to_owned(),
                            constants: values.iter().map(|v| (v.name.clone(), v.value)).collect(),
                        },
                    );
                }
                _ => {}
            }
        }
        Ok(t)
    }

    fn name_all(&mut self, btf: &Btf) -> Result<(), IsfError> {
        let mut user: HashMap<String, TypeId> = HashMap::new();
        let mut enums: HashMap<String, TypeId> = HashMap::new();
        for (id, ty) in btf.iter() {
            let name = match &ty.kind {
                Kind::Struct { .. } => claim(&mut user, &ty.name, id, "struct"),
                Kind::Union { .. } => claim(&mut user, &ty.name, id, "union"),
                Kind::Enum { .. } => claim(&mut enums, &ty.name, id, "enum"),
                Kind::Int {
                    size,
                    signed,
                    char,
                    bool,
                    ..
                } => {
                    let kind = if *bool {
                        "bool"
                    } else if *char || (*size == 1 && ty.name.ends_with("char")) {
                        "char"
                    } else {
                        "int"
                    };
                    self.add_base(&ty.name, BaseType::little(*size, *signed, kind))?;
                    ty.name.clone()
                }
                Kind::Float { size } => {
                    self.add_base(&ty.name, BaseType::little(*size, true, "float"))?;
                    ty.name.clone()
                }
                _ => continue,
            };
            self.names.insert(id, name);
        }
        // A declaration refers to the definition of the same name when there is one; otherwise
        // it becomes an empty type of that name, so references to it still resolve.
        for (id, ty) in btf.iter() {
            if let Kind::Fwd { union } = ty.kind {
                let name = match user.get(&ty.name) {
                    Some(&def) if !ty.name.is_empty() => self.name_of(def)?.to_owned(),
                    _ => {
                        let name = claim(&mut user, &ty.name, id, "fwd");
                        self.user_types.insert(
                            name.clone(),
                            UserType {
                                kind: if union { "union" } else { "struct" }.to_owned(),
                                size: 0,
                                fields: BTreeMap::new(),
                            },
                        );
                        name
                    }
                };
                self.names.insert(id, name);
            }
        }
        self.add_base("pointer", BaseType::little(POINTER_SIZE, false, "int"))?;
        self.add_base("void", BaseType::little(0, false, "void"))?;
        Ok(())
    }

    fn add_base(&mut self, name: &str, base: BaseType) -> Result<(), IsfError> {
        if name.is_empty() {
            return Err(IsfError::Types("an integer type without a name".into()));
        }
        match self.base_types.get(name) {
            Some(have) if *have != base && !(have.size == base.size && have.kind == base.kind) => {
                Err(IsfError::Types(format!(
                    "base type {name:?} is defined twice, as {have:?} and {base:?}"
                )))
            }
            Some(_) => Ok(()),
            None => {
                self.base_types.insert(name.to_owned(), base);
                Ok(())
            }
        }
    }

    fn require_base(&mut self, name: &str, size: u32, signed: bool) -> Result<(), IsfError> {
        let kind = if size == 1 { "char" } else { "int" };
        match self.base_types.get(name) {
            Some(b) if b.size != size => Err(IsfError::Types(format!(
                "base type {name:?} is {} bytes, an enum needs {size}",
                b.size
            ))),
            Some(_) => Ok(()),
            None => self.add_base(name, BaseType::little(size, signed, kind)),
        }
    }

    fn name_of(&self, id: TypeId) -> Result<&str, IsfError> {
        self.names
            .get(&id)
            .map(String::as_str)
            .ok_or_else(|| IsfError::Types(format!("type {id} has no ISF name")))
    }

    /// Skips typedefs and qualifiers.
    pub fn resolve(btf: &Btf, mut id: TypeId) -> Result<TypeId, IsfError> {
        for _ in 0..MAX_CHAIN {
            match btf.get(id).map(|t| &t.kind) {
                Some(
                    Kind::Typedef(to)
                    | Kind::Const(to)
                    | Kind::Volatile(to)
                    | Kind::Restrict(to)
                    | Kind::TypeTag(to),
                ) => id = *to,
                _ => return Ok(id),
            }
        }
        Err(IsfError::Types(format!(
            "type {id}: typedef or qualifier chain longer than {MAX_CHAIN} (a loop?)"
        )))
    }

    /// The descriptor of a reference to type `id`.
    pub fn desc(&self, btf: &Btf, id: TypeId) -> Result<Desc, IsfError> {
        self.desc_at(btf, id, 0)
    }

    fn desc_at(&self, btf: &Btf, id: TypeId, depth: usize) -> Result<Desc, IsfError> {
        if depth > MAX_CHAIN {
            return Err(IsfError::Types(format!(
                "type {id}: pointer or array nesting deeper than {MAX_CHAIN} (a loop?)"
            )));
        }
        let id = Self::resolve(btf, id)?;
        let Some(ty) = btf.get(id) else {
            return Ok(Desc::base("void"));
        };
        Ok(match &ty.kind {
            Kind::Int { .. } | Kind::Float { .. } => Desc::base(self.name_of(id)?),
            Kind::Ptr(to) => {
                let target = Self::resolve(btf, *to)?;
                let subtype = match btf.get(target).map(|t| &t.kind) {
                    Some(Kind::FuncProto | Kind::Func(_)) => Desc::Function,
                    _ => self.desc_at(btf, target, depth + 1)?,
                };
                Desc::Pointer {
                    subtype: Box::new(subtype),
                }
            }
            Kind::Array { elem, count } => Desc::Array {
                count: *count,
                subtype: Box::new(self.desc_at(btf, *elem, depth + 1)?),
            },
            Kind::Struct { .. } => Desc::Struct {
                name: self.name_of(id)?.to_owned(),
            },
            Kind::Union { .. } => Desc::Union {
                name: self.name_of(id)?.to_owned(),
            },
            Kind::Fwd { union } => {
                let name = self.name_of(id)?.to_owned();
                let defined_as_union = self.user_types.get(&name).map(|u| u.kind == "union");
                if defined_as_union.unwrap_or(*union) {
                    Desc::Union { name }
                } else {
                    Desc::Struct { name }
                }
            }
            Kind::Enum { .. } => Desc::Enum {
                name: self.name_of(id)?.to_owned(),
            },
            Kind::FuncProto | Kind::Func(_) => Desc::Function,
            Kind::Var(_) | Kind::Datasec { .. } | Kind::DeclTag(_) => {
                return Err(IsfError::Types(format!(
                    "type {id} ({:?}) is used as the type of a value",
                    ty.name
                )));
            }
            Kind::Typedef(_)
            | Kind::Const(_)
            | Kind::Volatile(_)
            | Kind::Restrict(_)
            | Kind::TypeTag(_) => unreachable_chain(id)?,
        })
    }

    fn fields(
        &self,
        btf: &Btf,
        owner: TypeId,
        members: &[crate::btf::Member],
    ) -> Result<BTreeMap<String, Field>, IsfError> {
        let mut fields = BTreeMap::new();
        for (index, m) in members.iter().enumerate() {
            let target = Self::resolve(btf, m.ty)?;
            let target_kind = btf.get(target).map(|t| &t.kind);
            let (name, anonymous) = if !m.name.is_empty() {
                (m.name.clone(), false)
            } else if matches!(target_kind, Some(Kind::Struct { .. } | Kind::Union { .. })) {
                (format!("unnamed_field_{index}"), true)
            } else {
                // `int :3;` padding: nothing to read.
                continue;
            };
            let field = self.field(btf, owner, m, target, &name)?;
            fields.insert(name, Field { anonymous, ..field });
        }
        Ok(fields)
    }

    fn field(
        &self,
        btf: &Btf,
        owner: TypeId,
        m: &crate::btf::Member,
        target: TypeId,
        name: &str,
    ) -> Result<Field, IsfError> {
        let target_kind = btf.get(target).map(|t| &t.kind);
        // An old-style bitfield: the member's integer type itself is narrower than its bytes.
        let (bit_offset, bit_length) = match (m.bitfield_size, target_kind) {
            (
                0,
                Some(Kind::Int {
                    size,
                    bit_offset,
                    bits,
                    ..
                }),
            ) if u32::from(*bits) != size * 8 || *bit_offset != 0 => {
                (m.bit_offset + u32::from(*bit_offset), u32::from(*bits))
            }
            (n, _) => (m.bit_offset, n),
        };
        if bit_length == 0 {
            if bit_offset % 8 != 0 {
                return Err(IsfError::Types(format!(
                    "type {owner} member {name:?} starts at bit {bit_offset}, not on a byte, and is not a bitfield"
                )));
            }
            return Ok(Field {
                ty: self.desc(btf, m.ty)?,
                offset: bit_offset / 8,
                anonymous: false,
            });
        }
        let (storage, base) = match target_kind {
            Some(Kind::Int { size, .. }) => (*size, Desc::base(self.name_of(target)?)),
            Some(Kind::Enum { size, .. }) => (
                *size,
                Desc::Enum {
                    name: self.name_of(target)?.to_owned(),
                },
            ),
            _ => {
                return Err(IsfError::Types(format!(
                    "type {owner} member {name:?} is a bitfield of a type that is neither an integer nor an enum"
                )));
            }
        };
        let unit_bits = storage * 8;
        // Read the bits through an aligned unit of the declared type, as the compiler lays
        // them out; a field that straddles such a unit (packed structs) is read from its
        // first byte instead.
        let mut unit = (bit_offset / unit_bits) * storage;
        let mut position = bit_offset - unit * 8;
        if position + bit_length > unit_bits {
            unit = bit_offset / 8;
            position = bit_offset % 8;
        }
        if position + bit_length > unit_bits {
            return Err(IsfError::Types(format!(
                "type {owner} member {name:?}: {bit_length} bits at bit {bit_offset} do not fit one {storage}-byte unit"
            )));
        }
        Ok(Field {
            ty: Desc::Bitfield {
                bit_position: position,
                bit_length,
                ty: Box::new(base),
            },
            offset: unit,
            anonymous: false,
        })
    }

    /// Size in bytes of a value of type `id`.
    pub fn size_of(btf: &Btf, id: TypeId) -> Result<u64, IsfError> {
        Self::size_at(btf, id, 0)
    }

    fn size_at(btf: &Btf, id: TypeId, depth: usize) -> Result<u64, IsfError> {
        if depth > MAX_CHAIN {
            return Err(IsfError::Types(format!("type {id}: nesting too deep")));
        }
        let id = Self::resolve(btf, id)?;
        Ok(match btf.get(id).map(|t| &t.kind) {
            None | Some(Kind::FuncProto | Kind::Func(_) | Kind::Fwd { .. }) => 0,
            Some(Kind::Int { size, .. } | Kind::Float { size } | Kind::Enum { size, .. }) => {
                u64::from(*size)
            }
            Some(Kind::Struct { size, .. } | Kind::Union { size, .. }) => u64::from(*size),
            Some(Kind::Ptr(_)) => u64::from(POINTER_SIZE),
            Some(Kind::Array { elem, count }) => {
                Self::size_at(btf, *elem, depth + 1)?.saturating_mul(u64::from(*count))
            }
            Some(_) => return Err(IsfError::Types(format!("type {id} has no size"))),
        })
    }

    /// Alignment in bytes of type `id`, as the x86_64 C ABI lays it out: an aggregate whose
    /// members sit off their natural alignment is taken as packed (alignment 1).
    pub fn align_of(btf: &Btf, id: TypeId) -> Result<u64, IsfError> {
        Self::align_at(btf, id, 0)
    }

    fn align_at(btf: &Btf, id: TypeId, depth: usize) -> Result<u64, IsfError> {
        if depth > MAX_CHAIN {
            return Err(IsfError::Types(format!("type {id}: nesting too deep")));
        }
        let id = Self::resolve(btf, id)?;
        Ok(match btf.get(id).map(|t| &t.kind) {
            Some(Kind::Array { elem, .. }) => Self::align_at(btf, *elem, depth + 1)?,
            Some(Kind::Struct { members, .. } | Kind::Union { members, .. }) => {
                let mut align = 1;
                for m in members {
                    let a = Self::align_at(btf, m.ty, depth + 1)?;
                    if m.bitfield_size == 0 && u64::from(m.bit_offset) % (a * 8) != 0 {
                        return Ok(1);
                    }
                    align = align.max(a);
                }
                align
            }
            _ => Self::size_at(btf, id, depth)?.clamp(1, 16),
        })
    }
}

fn unreachable_chain(id: TypeId) -> Result<Desc, IsfError> {
    Err(IsfError::Types(format!(
        "type {id}: a typedef was not resolved"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btf::testing::Builder;

    #[test]
    fn structs_fields_bitfields_and_anonymous_members() {
        let mut b = Builder::new();
        let int = b.int("int", 4, true);
        let uint = b.int("unsigned int", 4, false);
        let ch = b.char("char", true);
        let fwd = b.fwd("task_struct", false);
        let ptr = b.ptr(fwd);
        let arr = b.array(ch, int, 16);
        let proto = b.func_proto(int, &[ptr]);
        let fptr = b.ptr(proto);
        let anon = b.composite(true, "", 8, &[("a", int, 0, 0), ("b", ptr, 0, 0)]);
        let td = b.typedef("pid_t", int);
        let cst = b.constant(td);
        b.structure(
            "task_struct",
            64,
            &[
                ("pid", cst, 0, 0),
                ("flags", uint, 37, 3),
                ("parent", ptr, 64, 0),
                ("comm", arr, 128, 0),
                ("", anon, 256, 0),
                ("fn", fptr, 320, 0),
            ],
        );
        let btf = Btf::parse(&b.build()).unwrap();
        let t = Types::convert(&btf).unwrap();
        let ts = &t.user_types["task_struct"];
        assert_eq!(ts.size, 64);
        assert_eq!(ts.fields["pid"].ty, Desc::base("int"));
        assert_eq!(
            ts.fields["flags"],
            Field {
                ty: Desc::Bitfield {
                    bit_position: 5,
                    bit_length: 3,
                    ty: Box::new(Desc::base("unsigned int"))
                },
                offset: 4,
                anonymous: false
            }
        );
        assert_eq!(
            ts.fields["parent"].ty,
            Desc::Pointer {
                subtype: Box::new(Desc::Struct {
                    name: "task_struct".into()
                })
            }
        );
        assert_eq!(ts.fields["comm"].offset, 16);
        let anon_field = &ts.fields["unnamed_field_4"];
        assert!(anon_field.anonymous);
        assert_eq!(anon_field.offset, 32);
        assert_eq!(
            anon_field.ty,
            Desc::Union {
                name: format!("unnamed_union_{anon}")
            }
        );
        assert_eq!(
            ts.fields["fn"].ty,
            Desc::Pointer {
                subtype: Box::new(Desc::Function)
            }
        );
        assert!(t.base_types.contains_key("pointer") && t.base_types.contains_key("void"));
        assert_eq!(t.base_types["char"].kind, "char");
    }

    #[test]
    fn two_types_with_one_name_keep_their_own_layouts() {
        let mut b = Builder::new();
        let int = b.int("int", 4, true);
        let first = b.structure("dup", 4, &[("a", int, 0, 0)]);
        let second = b.structure("dup", 8, &[("b", int, 32, 0)]);
        let btf = Btf::parse(&b.build()).unwrap();
        let t = Types::convert(&btf).unwrap();
        assert_eq!(t.user_types["dup"].size, 4);
        assert_eq!(t.user_types[&format!("dup__btf{second}")].size, 8);
        assert_eq!(
            t.desc(&btf, first).unwrap(),
            Desc::Struct { name: "dup".into() }
        );
    }

    #[test]
    fn enums_get_a_base_type_of_their_size() {
        let mut b = Builder::new();
        b.enumeration("e", 4, &[("A", 0), ("B", -2)]);
        b.enumeration("", 1, &[("C", 1)]);
        let btf = Btf::parse(&b.build()).unwrap();
        let t = Types::convert(&btf).unwrap();
        assert_eq!(t.enums["e"].base, "int");
        assert_eq!(t.enums["e"].constants["B"], -2);
        assert_eq!(t.enums["unnamed_enum_2"].base, "unsigned char");
        assert_eq!(t.base_types["unsigned char"].size, 1);
    }

    #[test]
    fn a_typedef_loop_is_an_error() {
        let mut b = Builder::new();
        let int = b.int("int", 4, true);
        // typedef 2 -> 3 -> 2
        b.typedef("a", 3);
        b.typedef("b", 2);
        b.structure("s", 4, &[("x", 2, 0, 0), ("y", int, 0, 0)]);
        let btf = Btf::parse(&b.build()).unwrap();
        let err = Types::convert(&btf).unwrap_err().to_string();
        assert!(err.contains("loop"), "{err}");
    }

    #[test]
    fn alignment_follows_the_abi() {
        let mut b = Builder::new();
        let int = b.int("int", 4, true);
        let long = b.int("long int", 8, true);
        let s = b.structure("s", 16, &[("a", int, 0, 0), ("b", long, 64, 0)]);
        let packed = b.structure("p", 12, &[("a", int, 0, 0), ("b", long, 32, 0)]);
        let arr = b.array(s, int, 2);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(Types::align_of(&btf, s).unwrap(), 8);
        assert_eq!(Types::align_of(&btf, packed).unwrap(), 1);
        assert_eq!(Types::align_of(&btf, arr).unwrap(), 8);
        assert_eq!(Types::size_of(&btf, arr).unwrap(), 32);
    }
}
