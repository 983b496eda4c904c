//! Compile the mesh's protos with `tonic-prost-build`. `protoc` comes from the
//! `protoc-bin-vendored` crate (a `PROTOC` environment variable still wins), so nothing has to
//! be installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/user/v1/user.proto",
            "proto/order/v1/order.proto",
            "proto/item/v1/item.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    Ok(())
}
