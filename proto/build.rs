//! Compiles the .proto files under proto/ with a vendored protoc, so no system
//! protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded, so setting the variable is fine.
    std::env::set_var("PROTOC", protoc);
    let files = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/v3lockpb/v3lock.proto",
        "proto/v3electionpb/v3election.proto",
        "proto/strakepb/internal.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure().bytes(".").compile_protos(&files, &["proto"])?;
    // strakepb is strake's own peer protocol, not served to clients.
    let client_files = files.iter().filter(|f| !f.starts_with("proto/strakepb/"));
    let mut table = String::from(
        "/// Every RPC of the client-facing services, in declaration order.\npub const CLIENT_RPCS: &[Rpc] = &[\n",
    );
    for f in client_files {
        for rpc in rpcs_of(&std::fs::read_to_string(f)?) {
            table.push_str(&format!("    {rpc},\n"));
        }
    }
    table.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("client_rpcs.rs");
    std::fs::write(out, table)?;
    Ok(())
}

/// The RPCs a .proto file declares, as `Rpc { .. }` literals. The files are ours and
/// keep one `rpc` per line, so a line scan suffices.
fn rpcs_of(proto: &str) -> Vec<String> {
    let mut package = "";
    let mut service = "";
    let mut out = Vec::new();
    for line in proto.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("package ") {
            package = rest.trim_end_matches(';').trim();
        } else if let Some(rest) = line.strip_prefix("service ") {
            service = rest.trim_end_matches('{').trim();
        } else if let Some(rest) = line.strip_prefix("rpc ") {
            let (method, rest) = rest.split_once('(').expect("rpc NAME(");
            let (request, rest) = rest.split_once(')').expect("rpc NAME(REQUEST)");
            let response = rest.split_once('(').expect("returns (RESPONSE)").1;
            out.push(format!(
                "Rpc {{ service: \"{package}.{service}\", method: \"{}\", client_streaming: {}, server_streaming: {} }}",
                method.trim(),
                request.trim().starts_with("stream "),
                response.trim().starts_with("stream "),
            ));
        }
    }
    out
}
