//! OCI images written without a container engine: one gzipped tar layer of the given files, the
//! image config and manifest (JSON, each named by its sha256 digest), in an OCI image layout
//! packed as one tar file: what `podman load -i FILE`, `skopeo copy oci-archive:FILE ...` and
//! `docker load` read. The output is byte-for-byte the same for the same files: every time
//! stamp is 0, owners are root, and gzip's header has no time in it.
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file of the image: where it goes (a path without a leading `/`) and where it comes from.
pub struct ImageFile {
    pub path: String,
    pub source: PathBuf,
    pub mode: u32,
}

pub struct Image {
    /// The name `podman load` gives it, e.g. `localhost/probe:0.1.0`.
    pub name: String,
    pub files: Vec<ImageFile>,
    /// Empty directories the image needs (mount points), without a leading `/`.
    pub dirs: Vec<String>,
    pub entrypoint: Vec<String>,
    /// OCI annotations and config labels (`org.opencontainers.image.*`).
    pub labels: Vec<(String, String)>,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// The whole archive, as stored and as loaded.
    pub archive_bytes: u64,
    /// The gzipped layer, what a registry transfers.
    pub layer_bytes: u64,
    /// The layer unpacked: the image's size on disk.
    pub unpacked_bytes: u64,
    /// `sha256:...` of the manifest, the image's digest.
    pub manifest_digest: String,
    /// `sha256:...` of the config, the image's id in podman and Docker.
    pub config_digest: String,
}

const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Writes `image` as an OCI archive at `out`.
pub fn write_archive(image: &Image, out: &Path) -> std::io::Result<Written> {
    let mut layer = Tar::default();
    for dir in &image.dirs {
        layer.dir(dir.trim_end_matches('/'));
    }
    for file in &image.files {
        layer.file(&file.path, &std::fs::read(&file.source)?, file.mode);
    }
    let layer_tar = layer.finish();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&layer_tar)?;
    let layer_gz = gz.finish()?;

    let labels: serde_json::Map<String, serde_json::Value> =
        image.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": image.entrypoint, "Labels": labels },
        "rootfs": { "type": "layers", "diff_ids": [digest(&layer_tar)] },
        "history": [{ "created_by": "cargo xtask image (no container engine)" }],
    });
    let config = serde_json::to_vec(&config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": { "mediaType": MEDIA_CONFIG, "digest": digest(&config), "size": config.len() },
        "layers": [{ "mediaType": MEDIA_LAYER, "digest": digest(&layer_gz), "size": layer_gz.len() }],
        "annotations": labels,
    });
    let manifest = serde_json::to_vec(&manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": image.name },
        }],
    });

    let mut archive = Tar::default();
    archive.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644);
    archive.file("index.json", &serde_json::to_vec(&index)?, 0o644);
    archive.dir("blobs");
    archive.dir("blobs/sha256");
    for blob in [&layer_gz, &config, &manifest] {
        archive.file(&format!("blobs/sha256/{}", hex(&Sha256::digest(blob))), blob, 0o644);
    }
    let archive = archive.finish();
    // Written under another name first, so a reader never sees half an archive.
    let partial = out.with_extension("partial");
    std::fs::write(&partial, &archive)?;
    std::fs::rename(&partial, out)?;
    Ok(Written {
        archive_bytes: archive.len() as u64,
        layer_bytes: layer_gz.len() as u64,
        unpacked_bytes: image.files.iter().map(|f| std::fs::metadata(&f.source).map_or(0, |m| m.len())).sum(),
        manifest_digest: digest(&manifest),
        config_digest: digest(&config),
    })
}

/// `sha256:<hex>`, as OCI names blobs.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tar file in the POSIX ustar format: regular files and directories, owned by root, time 0.
#[derive(Default)]
struct Tar {
    data: Vec<u8>,
}

impl Tar {
    fn file(&mut self, path: &str, contents: &[u8], mode: u32) {
        self.header(path, contents.len() as u64, mode, b'0');
        self.data.extend_from_slice(contents);
        self.pad();
    }

    fn dir(&mut self, path: &str) {
        self.header(&format!("{path}/"), 0, 0o755, b'5');
    }

    fn header(&mut self, path: &str, size: u64, mode: u32, kind: u8) {
        assert!(path.len() < 100, "{path}: longer than a ustar name holds");
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut h[100..108], mode as u64);
        octal(&mut h[108..116], 0); // uid
        octal(&mut h[116..124], 0); // gid
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 0); // mtime
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        // The checksum is taken with its own field as spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        octal(&mut h[148..155], sum);
        h[155] = b' ';
        self.data.extend_from_slice(&h);
    }

    fn pad(&mut self) {
        let rest = self.data.len() % 512;
        if rest != 0 {
            self.data.resize(self.data.len() + 512 - rest, 0);
        }
    }

    /// Two zero blocks end the archive.
    fn finish(mut self) -> Vec<u8> {
        self.data.resize(self.data.len() + 1024, 0);
        self.data
    }
}

/// A zero-padded octal number filling all but the last byte of `field`, which stays NUL.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(text.len() == width, "{value} does not fit {width} octal digits");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_digests_name_blobs() {
        // FIPS 180-2's test vector.
        assert_eq!(digest(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tar_headers_are_ustar_with_their_checksum() {
        let mut tar = Tar::default();
        tar.file("probe", b"hello", 0o755);
        let data = tar.finish();
        assert_eq!(data.len(), 512 + 512 + 1024);
        let h = &data[..512];
        assert_eq!(&h[..6], b"probe\0");
        assert_eq!(&h[100..108], b"0000755\0");
        assert_eq!(&h[124..136], b"00000000005\0");
        assert_eq!(&h[257..263], b"ustar\0");
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h.to_vec();
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|&b| b as u64).sum::<u64>());
        assert_eq!(&data[512..517], b"hello");
    }

    #[test]
    fn the_same_files_make_the_same_archive() {
        let dir = std::env::temp_dir().join(format!("probe-oci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app"), b"\x7fELF not really").unwrap();
        let image = || Image {
            name: "localhost/t:1".into(),
            files: vec![ImageFile { path: "app".into(), source: dir.join("app"), mode: 0o755 }],
            dirs: vec!["tmp".into()],
            entrypoint: vec!["/app".into()],
            labels: vec![],
        };
        let a = write_archive(&image(), &dir.join("a.tar")).unwrap();
        let b = write_archive(&image(), &dir.join("b.tar")).unwrap();
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(std::fs::read(dir.join("a.tar")).unwrap(), std::fs::read(dir.join("b.tar")).unwrap());
        assert_eq!(a.unpacked_bytes, 15);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
