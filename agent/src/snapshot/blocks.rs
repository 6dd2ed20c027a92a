//! Which blocks a snapshot holds: `ListSnapshotBlocks` page by page, and `ListChangedBlocks`
//! against a baseline. Both are untrusted input: indexes must ascend and stay inside the volume,
//! tokens must be plausible, and the volume's geometry must not change between pages.
//!
//! The listing is read lazily, one page ahead of the reader, so memory does not grow with the
//! volume (a 64 TiB volume has 134 million blocks). A page token lives 60 minutes; if one
//! expires while the pipeline is slow, the listing resumes from the next block index instead.

use airf_evidence::snapshot::ChangedBlocks;
use aws_sdk_ebs::operation::list_changed_blocks::ListChangedBlocksError;
use aws_sdk_ebs::operation::list_snapshot_blocks::ListSnapshotBlocksError;
use aws_sdk_ebs::types::ValidationExceptionReason;

use super::SnapshotError;
use super::clients::{Clients, explain};

/// Blocks per `ListSnapshotBlocks` page (the API's maximum).
pub const PAGE_SIZE: i32 = 10_000;

/// A volume's geometry as the EBS direct APIs report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Volume size in GiB.
    pub volume_size_gib: u64,
    /// Bytes per block.
    pub block_size: u32,
}

impl Layout {
    /// Checks what the service reported: a block size that is a power of two between 64 KiB and
    /// 4 MiB (AWS uses 512 KiB; the API's block index is 32-bit, so smaller blocks could not
    /// address a large volume) and a volume of 1 GiB to 64 TiB, the EBS limits.
    pub fn new(
        id: &str,
        volume_size: Option<i64>,
        block_size: Option<i32>,
    ) -> Result<Self, SnapshotError> {
        let bad = |why: String| SnapshotError::BadResponse {
            id: id.to_owned(),
            why,
        };
        let gib = volume_size
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| (1..=64 * 1024).contains(v))
            .ok_or_else(|| {
                bad(format!(
                    "volume size {volume_size:?} GiB is outside 1 GiB-64 TiB"
                ))
            })?;
        let bs = block_size
            .and_then(|b| u32::try_from(b).ok())
            .filter(|b| b.is_power_of_two() && (64 << 10..=4 << 20).contains(b))
            .ok_or_else(|| {
                bad(format!(
                    "block size {block_size:?} is not a power of two from 64 KiB to 4 MiB"
                ))
            })?;
        Ok(Self {
            volume_size_gib: gib,
            block_size: bs,
        })
    }

    /// Volume size in bytes.
    pub fn volume_bytes(&self) -> u64 {
        self.volume_size_gib << 30
    }

    /// Blocks in the volume.
    pub fn blocks(&self) -> u64 {
        self.volume_bytes() / u64::from(self.block_size)
    }
}

/// A listed block: its index and the token `GetSnapshotBlock` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlock {
    /// Block index.
    pub index: u64,
    /// Block token.
    pub token: String,
}

/// `ListSnapshotBlocks`, one page at a time.
#[derive(Debug)]
pub struct BlockLister {
    clients: Clients,
    id: String,
    next_token: Option<String>,
    next_index: u64,
    done: bool,
    layout: Option<Layout>,
    /// Pages fetched.
    pub pages: u64,
    /// Blocks listed so far.
    pub listed: u64,
}

impl BlockLister {
    /// A lister for snapshot `id`; nothing is fetched yet.
    pub fn new(clients: Clients, id: &str) -> Self {
        Self {
            clients,
            id: id.to_owned(),
            next_token: None,
            next_index: 0,
            done: false,
            layout: None,
            pages: 0,
            listed: 0,
        }
    }

    /// The geometry, known after the first page.
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// The next page of blocks, or `None` when the listing is over.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ListedBlock>>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let mut expired_once = false;
        let out = loop {
            let mut req = self
                .clients
                .ebs
                .list_snapshot_blocks()
                .snapshot_id(&self.id)
                .max_results(PAGE_SIZE);
            req = match &self.next_token {
                Some(t) => req.next_token(t),
                None if self.next_index > 0 => {
                    req.starting_block_index(index_i32(&self.id, self.next_index)?)
                }
                None => req,
            };
            match req.send().await {
                Ok(out) => break out,
                Err(e) if self.next_token.is_some() && !expired_once && page_token_expired(&e) => {
                    // Resume by index: the next page starts where the last one ended.
                    tracing::info!(
                        "{}: page token expired; listing resumes at block {}",
                        self.id,
                        self.next_index
                    );
                    self.next_token = None;
                    expired_once = true;
                }
                Err(e) => {
                    return Err(SnapshotError::Api(explain(
                        "ebs:ListSnapshotBlocks",
                        &self.id,
                        &e,
                    )));
                }
            }
        };
        self.pages += 1;
        let layout = Layout::new(&self.id, out.volume_size(), out.block_size())?;
        match self.layout {
            None => self.layout = Some(layout),
            Some(first) if first != layout => {
                return Err(SnapshotError::BadResponse {
                    id: self.id.clone(),
                    why: format!(
                        "the volume's geometry changed between pages ({first:?} then {layout:?})"
                    ),
                });
            }
            Some(_) => {}
        }
        let mut page = Vec::with_capacity(out.blocks().len());
        for b in out.blocks() {
            let index = self.check_index(b.block_index(), layout)?;
            let token = check_token(&self.id, index, b.block_token())?;
            page.push(ListedBlock { index, token });
            self.next_index = index + 1;
        }
        self.listed += page.len() as u64;
        self.next_token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        // Empty pages that promise more are allowed (sparse volumes), but not without end.
        if self.next_token.is_some() && self.pages > layout.blocks() / 100 + 10_000 {
            return Err(SnapshotError::BadResponse {
                id: self.id.clone(),
                why: format!(
                    "{} pages for a volume of {} blocks: the listing does not end",
                    self.pages,
                    layout.blocks()
                ),
            });
        }
        self.done = self.next_token.is_none();
        Ok(Some(page))
    }

    fn check_index(&self, index: Option<i32>, layout: Layout) -> Result<u64, SnapshotError> {
        let bad = |why: String| SnapshotError::BadResponse {
            id: self.id.clone(),
            why,
        };
        let i = index
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| bad(format!("block index {index:?} is not a block index")))?;
        if i >= layout.blocks() {
            return Err(bad(format!(
                "block {i} lies beyond the volume's {} blocks",
                layout.blocks()
            )));
        }
        if i < self.next_index {
            return Err(bad(format!(
                "block {i} listed after block {}: the listing is not ascending",
                self.next_index.saturating_sub(1)
            )));
        }
        Ok(i)
    }
}

fn index_i32(id: &str, index: u64) -> Result<i32, SnapshotError> {
    i32::try_from(index).map_err(|_| SnapshotError::BadResponse {
        id: id.to_owned(),
        why: format!("block index {index} does not fit the API's 32-bit index"),
    })
}

/// A block token: 1-256 characters of base64's alphabet, as the API documents.
fn check_token(id: &str, index: u64, token: Option<&str>) -> Result<String, SnapshotError> {
    match token {
        Some(t)
            if !t.is_empty()
                && t.len() <= 256
                && t.bytes().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_')
                }) =>
        {
            Ok(t.to_owned())
        }
        other => Err(SnapshotError::BadResponse {
            id: id.to_owned(),
            why: format!(
                "block {index} has no usable block token ({:?})",
                other.map(|t| t.chars().take(40).collect::<String>())
            ),
        }),
    }
}

fn page_token_expired<R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<ListSnapshotBlocksError, R>,
) -> bool {
    matches!(
        e.as_service_error(),
        Some(ListSnapshotBlocksError::ValidationException(v))
            if v.reason() == Some(&ValidationExceptionReason::InvalidPageToken)
    )
}

/// `ListChangedBlocks` between `baseline` (earlier) and `id`: every block that differs,
/// including blocks written only in one of them.
pub async fn changed_blocks(
    clients: &Clients,
    baseline: &str,
    id: &str,
    layout: Layout,
) -> Result<ChangedBlocks, SnapshotError> {
    let mut changed = ChangedBlocks::new(baseline);
    let mut token: Option<String> = None;
    loop {
        let out = clients
            .ebs
            .list_changed_blocks()
            .first_snapshot_id(baseline)
            .second_snapshot_id(id)
            .max_results(PAGE_SIZE)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| {
                let mut msg = explain("ebs:ListChangedBlocks", &format!("{baseline} → {id}"), &e);
                if let Some(ListChangedBlocksError::ValidationException(v)) = e.as_service_error()
                    && v.reason() == Some(&ValidationExceptionReason::UnrelatedSnapshots)
                {
                    msg.push_str("; --baseline must be an earlier snapshot of the same volume");
                }
                SnapshotError::Api(msg)
            })?;
        let page_layout = Layout::new(id, out.volume_size(), out.block_size())?;
        if page_layout.block_size != layout.block_size {
            return Err(SnapshotError::BadResponse {
                id: id.to_owned(),
                why: format!(
                    "ListChangedBlocks reports {}-byte blocks, ListSnapshotBlocks {}",
                    page_layout.block_size, layout.block_size
                ),
            });
        }
        for b in out.changed_blocks() {
            let i = b
                .block_index()
                .and_then(|i| u64::try_from(i).ok())
                .filter(|&i| i < layout.blocks())
                .ok_or_else(|| SnapshotError::BadResponse {
                    id: id.to_owned(),
                    why: format!(
                        "changed block index {:?} is outside the volume",
                        b.block_index()
                    ),
                })?;
            changed.push(i).map_err(|why| SnapshotError::BadResponse {
                id: id.to_owned(),
                why,
            })?;
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(changed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_checked() {
        let l = Layout::new("snap-1", Some(8), Some(524_288)).unwrap();
        assert_eq!(l.volume_bytes(), 8 << 30);
        assert_eq!(l.blocks(), 16_384);
        for (size, block) in [
            (Some(0), Some(524_288)),
            (None, Some(524_288)),
            (Some(8), Some(512)),
            (Some(8), Some(4096)),
            (Some(8), Some(524_289)),
            (Some(8), None),
            (Some(70_000), Some(524_288)),
        ] {
            assert!(
                Layout::new("snap-1", size, block).is_err(),
                "{size:?} {block:?}"
            );
        }
    }

    #[test]
    fn tokens_are_checked() {
        assert!(
            check_token(
                "s",
                1,
                Some("AAUBAcuWqOCnDNuKle11s7IIX6jp6FYcC/q8oT93913HhvLvA+bKRA==")
            )
            .is_ok()
        );
        for bad in [None, Some(""), Some("a\nb"), Some("x".repeat(300).as_str())] {
            assert!(check_token("s", 1, bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_geometry_is_refused_or_consistent(size in proptest::option::of(proptest::num::i64::ANY), block in proptest::option::of(proptest::num::i32::ANY)) {
            if let Ok(l) = Layout::new("snap-1", size, block) {
                proptest::prop_assert_eq!(l.blocks() * u64::from(l.block_size), l.volume_bytes());
                proptest::prop_assert!(l.blocks() <= i32::MAX as u64);
            }
        }

        #[test]
        fn any_token_is_refused_or_plain(token in proptest::option::of(".{0,300}")) {
            if let Ok(t) = check_token("s", 0, token.as_deref()) {
                proptest::prop_assert!(t.len() <= 256 && !t.contains(['\n', ' ', '\0']));
            }
        }
    }
}
