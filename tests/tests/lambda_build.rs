//! What goes into the Lambda binaries: their dependency graphs (from `cargo tree`) and the release profile they
//! are built with (as `Cargo.toml` declares it).

use std::process::Command;

use s3_importer_tests::{repo_root, stdout_of};

/// The normal (non-dev) dependency graph of one workspace package, as `cargo tree` prints it.
fn normal_dependencies(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let stdout = stdout_of(
        Command::new(cargo)
            .args([
                "tree",
                "--offline",
                "--locked",
                "-p",
                package,
                "-e",
                "normal",
                "--prefix",
                "none",
            ])
            .current_dir(repo_root()),
        &format!("cargo tree -p {package}"),
    )
    .expect("cargo tree prints the dependency graph");
    String::from_utf8_lossy(&stdout).into_owned()
}

#[test]
fn the_lambda_functions_do_not_link_the_cloudformation_client() {
    for package in ["s3-importer-lister", "s3-importer-worker"] {
        let tree = normal_dependencies(package);
        assert!(
            tree.contains("s3-importer-aws"),
            "{package} depends on the AWS adapters:\n{tree}"
        );
        assert!(
            !tree.contains("aws-sdk-cloudformation"),
            "{package} links the CloudFormation client, which only the CLI needs:\n{tree}"
        );
    }
    // The CLI reads stack outputs, so it keeps it.
    assert!(normal_dependencies("s3-importer-cli").contains("aws-sdk-cloudformation"));
}

/// `make build` and `sam build` use the release profile. This reads `Cargo.toml` and the `Makefile` (it builds
/// nothing): the profile must ask for stripped symbols and no debug info, keep unwinding panics, and the build
/// must not call an external strip tool.
#[test]
fn the_release_profile_strips_symbols_drops_debug_info_and_unwinds() {
    let manifest =
        std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("read Cargo.toml");
    let manifest: toml::Table = toml::from_str(&manifest).expect("parse Cargo.toml");
    let release = &manifest["profile"]["release"];
    let strip = release.get("strip");
    assert!(
        matches!(strip, Some(toml::Value::Boolean(true)))
            || strip.and_then(|s| s.as_str()) == Some("symbols"),
        "the release profile strips symbols: strip = {strip:?}"
    );
    let debug = release.get("debug");
    assert!(
        matches!(
            debug,
            Some(toml::Value::Boolean(false)) | Some(toml::Value::Integer(0))
        ) || debug.and_then(|d| d.as_str()) == Some("none"),
        "the release profile has no debug info: debug = {debug:?}"
    );
    assert_ne!(
        release.get("panic").and_then(|p| p.as_str()),
        Some("abort"),
        "a panicking handler must unwind so the runtime reports it"
    );
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).expect("read Makefile");
    assert!(
        !makefile.contains("llvm-strip"),
        "the build does not depend on an external strip tool"
    );
}
