//! Compiles `proto/` with a vendored protoc, so a fresh machine builds with cargo alone.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment yet.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let protos = [
        "proto/chorus/peer/v1/peer.proto",
        "proto/chorus/peer/v1/failpoints.proto",
        "proto/chorus/v1/cluster.proto",
        "proto/chorus/v1/session.proto",
        "proto/chorus/v1/connection.proto",
        "proto/chorus/v1/media_node.proto",
        "proto/chorus/v1/license.proto",
        "proto/chorus/v1/event.proto",
        "proto/chorus/v1/recording.proto",
        "proto/chorus/license/v1/authority.proto",
    ];
    tonic_prost_build::configure()
        // The CLI prints API messages as JSON with the proto's snake_case field names.
        .type_attribute(".chorus.v1", "#[derive(serde::Serialize)]")
        .file_descriptor_set_path(
            std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("chorus_descriptor.bin"),
        )
        .compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
