//! `make sandbox`: a local control plane with Barge's CRDs installed, kept up
//! until Ctrl-C. Prints the KUBECONFIG to use with kubectl.

use std::path::PathBuf;
use std::process::ExitCode;

use barge_testenv::ControlPlane;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let crd_dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("crds"));
    eprintln!("sandbox: starting etcd and kube-apiserver");
    let cp = ControlPlane::start().await?;
    eprintln!(
        "sandbox: control plane ready in {:?} at {}",
        cp.startup_time(),
        cp.server()
    );

    let mut files: Vec<PathBuf> = std::fs::read_dir(&crd_dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let env = barge_testenv::TestEnv::from(cp);
    for file in &files {
        let names = env.apply_crd_files(&[file.as_path()]).await?;
        eprintln!("sandbox: installed {}", names.join(", "));
    }

    let kubeconfig = env.kubeconfig_path().display().to_string();
    println!("export KUBECONFIG={kubeconfig}");
    println!("export PATH={}:$PATH", env.bin_dir().display());
    if std::env::var("SANDBOX_EXIT").is_ok_and(|v| v == "1") {
        eprintln!("sandbox: SANDBOX_EXIT=1, stopping");
        return Ok(());
    }
    eprintln!("sandbox: up; press Ctrl-C to stop and clean up");
    tokio::signal::ctrl_c().await?;
    eprintln!("sandbox: stopping");
    Ok(())
}
