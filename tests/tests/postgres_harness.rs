//! The PostgreSQL test server starts, accepts connections, and runs as the user it must.

use s3_importer_tests::postgres::postgres;

#[tokio::test]
async fn the_test_server_accepts_connections_on_loopback() {
    let server = postgres().await;
    assert!(server.url().starts_with("postgres://postgres@127.0.0.1:"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port())).is_ok());
    assert!(
        server.data_dir().join("PG_VERSION").exists(),
        "{}",
        server.data_dir().display()
    );
}
