#!/usr/bin/env bash
# Publishes a release (packaging/release.sh's dist/) to the artifact bucket that the SSM
# documents and the controller fetch from, and, with --ecr, the agent's container image (for
# `airf-agent snapshot` on ECS Fargate) to template 3's ECR repository. Runs on a build machine
# with the AWS CLI, never on a suspect.
#
#   packaging/publish.sh <artifact-bucket> [--endpoint-url URL] [--lime-dir DIR] [--dist DIR]
#                        [--ecr REPOSITORY_URI [--ecr-profile PROFILE]]
#   packaging/publish.sh --ecr REPOSITORY_URI [--ecr-profile PROFILE] [--dist DIR]   (image only)
#
# layout  agent/<version>/airf-agent               dist/airf-agent (<version> from dist/VERSION)
#         agent/<version>/airf-agent.sha256        "<sha256>  airf-agent" (sha256sum format)
#         lime/<kernel-release>/lime.ko            each DIR/lime-<kernel-release>.ko
#         lime/<kernel-release>/lime.ko.sha256     "<sha256>  lime.ko"
#                                                  (vendor-lime/build.sh writes lime-*.ko)
#
# Evidence tooling is immutable per version: every key is checked (head-object) before anything
# is uploaded; an existing object with the same bytes is left alone, one with different bytes
# makes the whole publish fail with nothing uploaded. Each binary goes up before its .sha256, so
# a checksum that can be read names a binary that is there. Credentials and region come from the
# AWS CLI's usual chain; AWS_ENDPOINT_URL works too.
#
# --ecr REPOSITORY_URI (template 3's SnapshotRepositoryUri output,
# <account>.dkr.ecr.<region>.amazonaws.com/airf-agent): packaging/oci-image.sh builds the image
# from dist/airf-agent (reproducible: the digest any earlier build printed) and skopeo copies it,
# digests preserved, to REPOSITORY_URI:<version>, logged in with `aws ecr get-login-password`
# (an auth file in a temporary directory, removed on exit). The repository's tags are immutable:
# a tag that already names the same digest is left alone, one naming another digest makes the
# publish fail before anything is uploaded. The ECR calls use --ecr-profile (the Security
# account's) when given, else the same credentials as the bucket's; --endpoint-url is for S3
# only. Prints REPOSITORY_URI@<digest>, the value for template 3's SnapshotImageUri.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 [<artifact-bucket>] [--endpoint-url URL] [--lime-dir DIR] [--dist DIR] [--ecr REPOSITORY_URI [--ecr-profile PROFILE]]" >&2
  exit 2
}
die() {
  echo "publish.sh: $*" >&2
  exit 1
}

bucket=
aws_opts=()
lime_dir=
dist=dist
ecr=
ecr_opts=()
while (($#)); do
  case $1 in
    --endpoint-url) aws_opts=(--endpoint-url "${2:?}"); shift 2 ;;
    --lime-dir) lime_dir=${2:?}; shift 2 ;;
    --dist) dist=${2:?}; shift 2 ;;
    --ecr) ecr=${2:?}; shift 2 ;;
    --ecr-profile) ecr_opts=(--profile "${2:?}"); shift 2 ;;
    -*) usage ;;
    *) [ -z "$bucket" ] || usage; bucket=$1; shift ;;
  esac
done
[ -n "$bucket" ] || [ -n "$ecr" ] || usage
[ -n "$bucket" ] || [ -z "$lime_dir" ] || usage
bucket=${bucket#s3://}
bucket=${bucket%%/*}
command -v aws >/dev/null || die "the aws CLI is missing (tests/scripts/install-deps.sh installs it)"
if [ -n "$ecr" ]; then
  # <account>.dkr.ecr.<region>.amazonaws.com/<repository>, no tag or digest: the version is the tag.
  [[ $ecr =~ ^([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/([a-z0-9._/-]+)$ ]] ||
    die "--ecr $ecr is no ECR repository URI (<account>.dkr.ecr.<region>.amazonaws.com/<repository>)"
  ecr_registry=${ecr%%/*}
  ecr_region=${BASH_REMATCH[2]}
  ecr_repository=${BASH_REMATCH[4]}
  ecr_opts+=(--region "$ecr_region")
  command -v skopeo >/dev/null || die "skopeo is missing (tests/scripts/install-deps.sh installs it)"
fi

# The release itself must be whole and consistent before anything leaves this machine.
for f in airf-agent airf-agent.sha256 VERSION; do
  [ -f "$dist/$f" ] || die "$dist/$f is missing; run packaging/release.sh first"
done
version=$(cat "$dist/VERSION")
[[ $version =~ ^[0-9A-Za-z.+-]+$ ]] || die "$dist/VERSION holds no version: '$version'"
(cd "$dist" && sha256sum --quiet -c airf-agent.sha256) || die "$dist/airf-agent does not match $dist/airf-agent.sha256"
[ "$("$dist/airf-agent" --version)" = "airf-agent $version" ] ||
  die "$dist/airf-agent --version is '$("$dist/airf-agent" --version)', $dist/VERSION says $version"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The image first: it is built from the checked binary and must not contradict the repository.
image_todo=
if [ -n "$ecr" ]; then
  packaging/oci-image.sh --binary "$dist/airf-agent" --out "$work/oci" --tag "$version" >"$work/oci.ref" ||
    die "packaging/oci-image.sh failed"
  digest=$(sed -n 2p "$work/oci.ref")
  if ! pushed=$(aws "${ecr_opts[@]}" ecr describe-images --repository-name "$ecr_repository" \
      --image-ids "imageTag=$version" --query 'imageDetails[0].imageDigest' --output text 2>"$work/ecr.err"); then
    grep -q ImageNotFoundException "$work/ecr.err" || die "cannot check $ecr:$version: $(cat "$work/ecr.err")"
    image_todo=1
  elif [ "$pushed" = "$digest" ]; then
    echo "unchanged $ecr:$version ($digest)" >&2
  else
    die "$ecr:$version already names $pushed, this release's image is $digest; tags are immutable: bump the version instead"
  fi
fi

# uploads: "KEY FILE" lines, binaries before their checksums.
uploads=()
# add KEY FILE NAME: FILE at KEY and its "<sha256>  NAME" at KEY.sha256.
add() {
  local key=$1 file=$2 name=$3 sum
  sum=$work/${key//\//_}.sha256
  printf '%s  %s\n' "$(sha256sum <"$file" | cut -d' ' -f1)" "$name" >"$sum"
  uploads+=("$key" "$file" "$key.sha256" "$sum")
}
[ -z "$bucket" ] || add "agent/$version/airf-agent" "$dist/airf-agent" airf-agent
if [ -n "$lime_dir" ]; then
  [ -d "$lime_dir" ] || die "--lime-dir $lime_dir is not a directory"
  shopt -s nullglob
  modules=("$lime_dir"/lime-*.ko)
  shopt -u nullglob
  ((${#modules[@]})) || die "no lime-<kernel-release>.ko in $lime_dir"
  for m in "${modules[@]}"; do
    release=$(basename "$m" .ko)
    release=${release#lime-}
    add "lime/$release/lime.ko" "$m" lime.ko
  done
fi

# exists KEY FILE: 0 if KEY holds FILE's bytes, 1 if there is no KEY; dies if KEY differs.
exists() {
  local key=$1 file=$2 err=$work/head.err
  if ! aws "${aws_opts[@]}" s3api head-object --bucket "$bucket" --key "$key" >/dev/null 2>"$err"; then
    grep -qE '\(404\)|Not Found|NoSuchKey' "$err" && return 1
    die "cannot check s3://$bucket/$key: $(cat "$err")"
  fi
  aws "${aws_opts[@]}" s3 cp --quiet "s3://$bucket/$key" "$work/existing" ||
    die "cannot read s3://$bucket/$key to compare it"
  cmp -s "$work/existing" "$file" ||
    die "s3://$bucket/$key already exists with different content; versions are immutable: bump the version instead"
  return 0
}

todo=()
for ((i = 0; i < ${#uploads[@]}; i += 2)); do
  key=${uploads[i]} file=${uploads[i + 1]}
  if exists "$key" "$file"; then
    echo "unchanged s3://$bucket/$key" >&2
  else
    todo+=("$key" "$file")
  fi
done
for ((i = 0; i < ${#todo[@]}; i += 2)); do
  key=${todo[i]} file=${todo[i + 1]}
  aws "${aws_opts[@]}" s3 cp --quiet "$file" "s3://$bucket/$key" || die "uploading s3://$bucket/$key failed"
  echo "uploaded s3://$bucket/$key" >&2
done
for ((i = 0; i < ${#uploads[@]}; i += 2)); do
  echo "s3://$bucket/${uploads[i]}"
done

if [ -n "$image_todo" ]; then
  # skopeo reads the password on stdin: it never shows in a process list.
  aws "${ecr_opts[@]}" ecr get-login-password |
    skopeo login --authfile "$work/auth.json" --username AWS --password-stdin "$ecr_registry" >/dev/null ||
    die "logging in to $ecr_registry failed"
  skopeo copy --quiet --preserve-digests --retry-times 3 --authfile "$work/auth.json" \
    --digestfile "$work/pushed.digest" "oci:$work/oci:$version" "docker://$ecr:$version" ||
    die "pushing $ecr:$version failed"
  [ "$(cat "$work/pushed.digest")" = "$digest" ] ||
    die "$ecr:$version was pushed as $(cat "$work/pushed.digest"), not as the built $digest"
  echo "pushed $ecr:$version ($digest)" >&2
fi
[ -z "$ecr" ] || echo "$ecr@$digest"
