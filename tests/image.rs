//! The container image `make image` writes to `target/image/` (an OCI image
//! layout; `hack/image/build.sh`): pushed with crane to a real registry
//! (CNCF distribution, `make registry`), pulled back from it as one file
//! system, and run from there: `barge --version`, `barge run --help`,
//! kustomize and helm (which renders the chart, whose default image is this
//! one). The layers' entries must carry the owners and modes the build gives
//! them, every binary must be static (the image has no libc), and the
//! configuration must run `/barge run` as 65532 with the tools' paths set.
//!
//! Skipped when there is no layout (`make test` on its own) or no crane,
//! unless `BARGE_IMAGE_REQUIRED=1`, which `make image-verify` (and so CI)
//! sets after building both. `BARGE_IMAGE_LAYOUT` and `BARGE_CRANE_DIR`
//! override where they are.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use barge_testenv::registry::Registry;
use serde_json::Value;
use support::{Error, TestResult};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn layout() -> PathBuf {
    std::env::var_os("BARGE_IMAGE_LAYOUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/image"))
}

/// crane's directory: `$BARGE_CRANE_DIR`, else the cache at the version
/// `hack/crane/go.mod` pins.
fn crane() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("BARGE_CRANE_DIR") {
        return Ok(PathBuf::from(dir).join("crane"));
    }
    let go_mod = std::fs::read_to_string(root().join("hack/crane/go.mod"))?;
    let version = go_mod
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("github.com/google/go-containerregistry v")
        })
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("hack/crane/go.mod does not require go-containerregistry")?;
    Ok(barge_testenv::cache_dir()
        .join(format!("crane-{version}"))
        .join("crane"))
}

/// Whether to run: the layout and crane are there, or they must be.
fn ready(crane: &Path) -> Result<bool, Error> {
    let required = std::env::var("BARGE_IMAGE_REQUIRED").is_ok_and(|v| v == "1");
    let index = layout().join("index.json");
    for (what, path, make) in [
        ("image layout", &index, "make image"),
        ("crane", &crane.to_path_buf(), "make image-verify"),
    ] {
        if !path.is_file() {
            if required {
                return Err(format!("no {what} at {}: run `{make}`", path.display()).into());
            }
            eprintln!(
                "skipped: no {what} at {} (`make image-verify` builds it and runs this)",
                path.display()
            );
            return Ok(false);
        }
    }
    Ok(true)
}

fn run(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<Output, Error> {
    let output = Command::new(program)
        .args(args)
        // Nothing from the host's environment: only what the image gives.
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {args:?}: {}\nstdout: {}\nstderr: {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(output)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Whether an ELF executable asks for a program interpreter (a dynamic
/// loader, which the image does not have). 64-bit little-endian only, as
/// the image is linux/amd64.
fn has_interpreter(elf: &[u8]) -> Result<bool, Error> {
    let word = |at: usize, len: usize| -> Result<u64, Error> {
        let bytes = elf.get(at..at + len).ok_or("truncated ELF file")?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) || elf.get(4) != Some(&2) {
        return Err("not a 64-bit ELF file".into());
    }
    let phoff = usize::try_from(word(0x20, 8)?)?;
    let phentsize = usize::try_from(word(0x36, 2)?)?;
    let phnum = usize::try_from(word(0x38, 2)?)?;
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        if word(phoff + i * phentsize, 4)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `tar -tv --numeric-owner` lines of an archive, as (mode, owner, path).
fn entries(archive: &Path) -> Result<Vec<(String, String, String)>, Error> {
    let output = run(
        Path::new("tar"),
        &["--numeric-owner", "-tvf", path_str(archive)?],
        &[],
    )?;
    Ok(stdout(&output)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.get(5..)?.join(" ");
            Some((
                fields.first()?.to_string(),
                fields.get(1)?.to_string(),
                path.trim_start_matches("./").trim_end_matches('/').into(),
            ))
        })
        .collect())
}

fn path_str(path: &Path) -> Result<&str, Error> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()).into())
}

#[tokio::test]
async fn the_image_pushes_pulls_back_and_runs_barge_kustomize_and_helm() -> TestResult {
    let crane = crane()?;
    if !ready(&crane)? {
        return Ok(());
    }
    let layout = layout();
    let index = read_json(&layout.join("index.json"))?;
    let descriptor = &index["manifests"][0];
    let digest = descriptor["digest"]
        .as_str()
        .ok_or("index.json names no manifest")?;
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"], VERSION,
        "the layout's tag is the crate's version"
    );
    let name = descriptor["annotations"]["io.containerd.image.name"]
        .as_str()
        .ok_or("index.json names no image")?;

    // The layout as a registry gets it.
    let registry = Registry::start().await?;
    let reference = format!("{}/barge:{VERSION}", registry.host());
    let pushed = run(
        &crane,
        &["push", "--insecure", path_str(&layout)?, &reference],
        &[],
    )?;
    assert_eq!(
        stdout(&pushed),
        format!("{}/barge@{digest}", registry.host()),
        "the registry stores the layout's manifest unchanged"
    );
    let remote = stdout(&run(&crane, &["digest", "--insecure", &reference], &[])?);
    assert_eq!(remote, digest);

    let manifest = read_json(
        &layout.join("blobs/sha256").join(
            digest
                .strip_prefix("sha256:")
                .ok_or("a digest that is not sha256")?,
        ),
    )?;
    let compressed: u64 = manifest["layers"]
        .as_array()
        .ok_or("a manifest without layers")?
        .iter()
        .filter_map(|l| l["size"].as_u64())
        .sum();

    let config: Value = serde_json::from_str(&stdout(&run(
        &crane,
        &["config", "--insecure", &reference],
        &[],
    )?))?;
    let c = &config["config"];
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/barge"]));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], VERSION);
    let env: Vec<&str> = c["Env"]
        .as_array()
        .ok_or("a config without Env")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for var in [
        "BARGE_KUSTOMIZE=/usr/local/bin/kustomize",
        "BARGE_HELM=/usr/local/bin/helm",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(env.contains(&var), "{var} not in the image's Env {env:?}");
    }

    // The file system, pulled back and flattened.
    let scratch = tempfile::tempdir()?;
    let archive = scratch.path().join("fs.tar");
    run(
        &crane,
        &["export", "--insecure", &reference, path_str(&archive)?],
        &[],
    )?;
    let unpacked = std::fs::metadata(&archive)?.len();
    let listed = entries(&archive)?;
    let entry = |path: &str| listed.iter().find(|(_, _, p)| p == path);
    for (path, mode, owner) in [
        ("barge", "-rwxr-xr-x", "0/0"),
        ("usr/local/bin/kustomize", "-rwxr-xr-x", "0/0"),
        ("usr/local/bin/helm", "-rwxr-xr-x", "0/0"),
        ("etc/ssl/certs/ca-certificates.crt", "-rw-r--r--", "0/0"),
        ("etc/passwd", "-rw-r--r--", "0/0"),
        ("tmp", "drwxrwxrwt", "0/0"),
        ("home/nonroot", "drwxr-xr-x", "65532/65532"),
    ] {
        let found = entry(path).ok_or(format!("{path} is not in the image"))?;
        assert_eq!(
            (found.0.as_str(), found.1.as_str()),
            (mode, owner),
            "{path}"
        );
    }
    let fs = scratch.path().join("root");
    std::fs::create_dir(&fs)?;
    run(
        Path::new("tar"),
        &["-xf", path_str(&archive)?, "-C", path_str(&fs)?],
        &[],
    )?;
    let passwd = std::fs::read_to_string(fs.join("etc/passwd"))?;
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let bundle = std::fs::read_to_string(fs.join("etc/ssl/certs/ca-certificates.crt"))?;
    let roots = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(roots > 100, "only {roots} CA certificates in the bundle");

    let barge = fs.join("barge");
    let kustomize = fs.join("usr/local/bin/kustomize");
    let helm = fs.join("usr/local/bin/helm");
    for binary in [&barge, &kustomize, &helm] {
        assert!(
            !has_interpreter(&std::fs::read(binary)?)?,
            "{} is dynamically linked",
            binary.display()
        );
    }

    let version = stdout(&run(&barge, &["--version"], &[])?);
    assert_eq!(version, format!("barge {VERSION}"));
    let help = stdout(&run(&barge, &["run", "--help"], &[])?);
    for option in ["--kustomize", "--helm", "BARGE_KUSTOMIZE", "BARGE_HELM"] {
        assert!(help.contains(option), "`barge run --help` lacks {option}");
    }

    let kustomize_version = stdout(&run(&kustomize, &["version"], &[])?);
    assert!(
        kustomize_version.starts_with('v'),
        "kustomize version: {kustomize_version}"
    );
    let home = scratch.path().join("home");
    std::fs::create_dir(&home)?;
    let helm_env = [("HOME", home.as_path())];
    let helm_version = stdout(&run(&helm, &["version", "--short"], &helm_env)?);
    assert!(
        helm_version.starts_with("v3."),
        "helm version: {helm_version}"
    );
    // The chart, rendered by the image's helm, runs this image by default.
    let rendered = stdout(&run(
        &helm,
        &[
            "template",
            "barge",
            path_str(&root().join("charts/barge"))?,
            "--namespace",
            "barge-system",
        ],
        &helm_env,
    )?);
    assert!(
        rendered.contains(&format!("image: \"{name}\"")),
        "the chart's default image is not {name}"
    );
    // kustomize builds a directory from the image too.
    let kustomization = scratch.path().join("k");
    std::fs::create_dir(&kustomization)?;
    std::fs::write(
        kustomization.join("kustomization.yaml"),
        "resources: [cm.yaml]\nnamePrefix: image-\n",
    )?;
    std::fs::write(
        kustomization.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: test\n",
    )?;
    let built = stdout(&run(
        &kustomize,
        &["build", path_str(&kustomization)?],
        &[],
    )?);
    assert!(built.contains("name: image-test"), "{built}");

    eprintln!(
        "image {name}@{digest}: {compressed} bytes of compressed layers, \
         {unpacked} bytes unpacked (the flattened file system as a tar)"
    );
    Ok(())
}
