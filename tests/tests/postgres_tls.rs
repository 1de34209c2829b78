//! TLS to PostgreSQL is verified. Through a TLS front of the test server (`s3_importer_tests::postgres_tls`),
//! whose certificate names `localhost` only and is signed by a throw-away authority, a connection succeeds
//! only when that authority is trusted (`sslrootcert`) and the host is the certificate's name — for
//! `sslmode=require` and `prefer` too, which libpq would accept unverified.

use s3_importer_postgres::{connect, ConnectionSettings};
use s3_importer_tests::postgres::PG_USER;
use s3_importer_tests::postgres_tls::tls_front;

/// The front's settings for `host` and the query string `params`.
async fn settings(host: &str, params: &str) -> ConnectionSettings {
    let front = tls_front().await;
    let url = format!(
        "postgres://{PG_USER}@{host}:{}/postgres?{params}",
        front.port()
    );
    ConnectionSettings::from_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test]
async fn a_verified_server_is_reached_over_tls() {
    let ca = tls_front().await.ca_cert().display().to_string();
    for mode in ["verify-full", "require", "prefer"] {
        let s = settings("localhost", &format!("sslmode={mode}&sslrootcert={ca}")).await;
        let client = connect(&s)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e:?}"));
        let one: i32 = client
            .query_one("SELECT 1", &[])
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"))
            .get(0);
        assert_eq!(one, 1, "{mode}");
    }
}

#[tokio::test]
async fn an_unknown_authority_or_another_name_is_refused() {
    let ca = tls_front().await.ca_cert().display().to_string();
    let cases = [
        // The authority is not trusted (Mozilla's roots only).
        (
            "localhost",
            "sslmode=verify-full".to_owned(),
            "UnknownIssuer",
        ),
        ("localhost", "sslmode=require".to_owned(), "UnknownIssuer"),
        ("localhost", "sslmode=prefer".to_owned(), "UnknownIssuer"),
        // Trusted, but the certificate does not name 127.0.0.1.
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            "NotValidForName",
        ),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={ca}"),
            "NotValidForName",
        ),
    ];
    for (host, params, want) in cases {
        let s = settings(host, &params).await;
        let err = match connect(&s).await {
            Ok(_) => panic!("{host}?{params}: connected without a verified certificate"),
            Err(e) => format!("{e:?}"),
        };
        assert!(err.contains(want), "{host}?{params}: {err}");
    }
}
