//! Memory acquisition: physical RAM as a LiME-format image, from `/proc/kcore` or LiME.
//!
//! Sources, tried in order by `auto` (every failure is kept, so the final error names each
//! source's own cause):
//! - [`MemorySource::Kcore`]: `/proc/kcore` needs no kernel change. It needs CAP_SYS_RAWIO and is
//!   refused under lockdown *confidentiality* (allowed under *integrity*, which in turn refuses
//!   unsigned modules such as LiME), so it goes first. See [`kcore`].
//! - [`MemorySource::Lime`]: the LiME module, checked (SHA-256, vermagic) before it is loaded
//!   and always unloaded after. See [`lime`].
//!
//! Both produce the same LiME-format stream (a 32-byte header per "System RAM" range of
//! `/proc/iomem`, then its bytes), which goes through the same pipeline, sinks and manifest as
//! disks. Small artifacts that spare the analyst the "profile problem" (VMCOREINFO, BTF, kernel
//! banner, command line, module list) are stored beside the image and listed in the manifest.

mod acquire;
pub mod artifacts;
pub mod content;
pub mod iomem;
pub mod kcore;
pub mod lime;
pub mod lime_format;
pub mod lockdown;
mod source;

pub use acquire::{MemoryOptions, PrepareError, PreparedMemory, acquire_memory, prepare};
pub use airf_evidence::memory::{
    Artifact, MemoryFacts, MemorySource, MissingArtifact, SourceAttempt,
};
pub use source::{
    IOMEM, KCORE, LimeOptions, NoSource, OpenedSource, RamMap, ScannedProducer, SourceChoice,
    open_kcore, open_lime, open_source, read_ram_map,
};
