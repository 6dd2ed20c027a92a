//! What S3 kept when a response was lost.
//!
//! When the response to CompleteMultipartUpload or PutObject is lost, the SDK retries, and the
//! retry meets the first attempt's success: `NoSuchUpload` (the upload is already complete) or
//! `PreconditionFailed` (`If-None-Match: *` and the object now exists). The acquisition role
//! cannot read objects, so the agent lists its own key (ListObjectsV2, names, sizes and ETags
//! only) and compares the size and the ETag S3 derives from what was sent: for a multipart
//! upload the MD5 of the parts' binary ETags followed by `-<parts>`, for a single PUT without
//! SSE-KMS the MD5 of the body.

use aws_sdk_s3::Client;
use md5::{Digest, Md5};
use tokio::runtime::Handle;

use crate::s3_client::describe;

/// What a lost response left at a key, as far as a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The object is there with the size and ETag this run's upload gives it.
    Ours,
    /// The object is there with the right size; its ETag cannot tell (SSE-KMS single PUT).
    SameSize,
    /// Something else is at the key (another size or ETag).
    Other {
        /// Its size.
        size: u64,
        /// Its ETag.
        etag: String,
    },
    /// Nothing is at the key.
    Missing,
}

/// The ETag S3 gives a multipart upload of parts with these ETags, or None when a part ETag is
/// not the 32 hex digits of an MD5.
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut md5 = Md5::new();
    let mut parts = 0usize;
    for etag in part_etags {
        let bin = hex::decode(etag.trim_matches('"'))
            .ok()
            .filter(|b| b.len() == 16)?;
        md5.update(&bin);
        parts += 1;
    }
    Some(format!("{}-{parts}", hex::encode(md5.finalize())))
}

/// The ETag S3 gives a single PUT of `body` (without SSE-KMS).
pub fn single_put_etag(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// Lists `key` in `bucket` and says whether the object there is the one expected: `size` bytes
/// and, when given, the ETag `etag` (unquoted hex, `-<parts>` for multipart).
pub fn kept_at(
    client: &Client,
    rt: &Handle,
    bucket: &str,
    key: &str,
    size: u64,
    etag: Option<&str>,
) -> Result<Kept, String> {
    let out = rt
        .block_on(
            client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(key)
                .max_keys(2)
                .send(),
        )
        .map_err(|e| describe("ListObjectsV2", &format!("s3://{bucket}/{key}"), &e))?;
    let Some(found) = out.contents().iter().find(|o| o.key() == Some(key)) else {
        return Ok(Kept::Missing);
    };
    let found_size = found
        .size()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let found_etag = found
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    Ok(match etag {
        _ if found_size != size => Kept::Other {
            size: found_size,
            etag: found_etag,
        },
        Some(want) if want.eq_ignore_ascii_case(&found_etag) => Kept::Ours,
        Some(_) => Kept::Other {
            size: found_size,
            etag: found_etag,
        },
        None => Kept::SameSize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_is_md5_of_binary_part_md5s() {
        // Two parts "a" and "b": their MD5s, concatenated in binary, then MD5 again.
        let a = single_put_etag(b"a");
        let b = single_put_etag(b"b");
        let mut cat = hex::decode(&a).unwrap();
        cat.extend(hex::decode(&b).unwrap());
        let want = format!("{}-2", hex::encode(Md5::digest(&cat)));
        let quoted_a = format!("\"{a}\"");
        assert_eq!(multipart_etag([quoted_a.as_str(), b.as_str()]), Some(want));
        assert_eq!(multipart_etag(["not-an-md5"]), None);
        assert_eq!(single_put_etag(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
