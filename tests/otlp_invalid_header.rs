//! A header value that HTTP cannot carry (a line break, e.g. an API key read from a file with
//! its trailing newline) is a build error whatever the protocol. Under gRPC it is; under
//! HTTP/protobuf and HTTP/JSON `opentelemetry-otlp`'s builder drops the header without a word,
//! so every export goes without it (an authenticating collector refuses them all).
#![cfg(feature = "otlp")]
mod support;

use tracing_offload::sink::otlp::Protocol;
use tracing_offload::sink::Otlp;
use tracing_offload::{BuildError, OffloadLayer};

#[test]
fn an_invalid_header_value_is_a_build_error_under_every_protocol() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf, Protocol::HttpJson] {
        let built = OffloadLayer::builder()
            .sink(
                Otlp::new()
                    .protocol(protocol)
                    .header("x-api-key", "secret\n"),
            )
            .build();
        match built {
            Err(err @ BuildError::Sink { .. }) => {
                let text = support::error_chain(&err);
                assert!(text.contains("x-api-key"), "{protocol:?}: {text}");
            }
            Err(other) => panic!("{protocol:?}: another error: {other}"),
            Ok(_) => panic!("{protocol:?}: built; the header would be dropped"),
        }
    }
}
