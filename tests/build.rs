//! Marks the PostgreSQL half of the suite `ignored` (with the reason, in the
//! test command's own output) unless `SCRIPTBOX_TEST_POSTGRES_URL` names a
//! server. CI sets it; there a missing server fails the tests instead.

fn main() {
    println!("cargo::rerun-if-env-changed=SCRIPTBOX_TEST_POSTGRES_URL");
    println!("cargo::rustc-check-cfg=cfg(scriptbox_postgres)");
    let set = std::env::var("SCRIPTBOX_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty());
    if set {
        println!("cargo::rustc-cfg=scriptbox_postgres");
    }
}
