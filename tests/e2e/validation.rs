//! The `request-validation` plugin: JSON Schema bodies, OpenAPI operations, problem documents,
//! and specs read from files (`config_files`) that reload when they change.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const PETSTORE: &str = r##"
openapi: 3.0.3
info: { title: pets, version: "1" }
servers: [{ url: "https://api.example.com/v1" }]
paths:
  /pets:
    get:
      parameters:
        - { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 100 } }
        - { name: tags, in: query, schema: { type: array, items: { type: string, enum: [cat, dog] } } }
        - { name: x-api-version, in: header, required: true, schema: { type: string, enum: ["1", "2"] } }
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: "#/components/schemas/Pet" }
  /pets/{petId}:
    parameters:
      - { name: petId, in: path, required: true, schema: { type: integer, minimum: 1 } }
    get: {}
    delete: {}
components:
  schemas:
    Pet:
      type: object
      required: [name, kind]
      additionalProperties: false
      properties:
        name: { type: string, minLength: 1, maxLength: 40 }
        kind: { type: string, enum: [cat, dog] }
        birthday: { type: string, format: date }
        owner: { type: string, nullable: true }
"##;

fn openapi_config(upstream: std::net::SocketAddr, spec: &std::path::Path, extra: &str) -> String {
    format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{upstream}"]
[plugins.validate]
module = "builtin:request-validation"
[[routes]]
name = "pets"
upstream = "up"
plugins = [{{ use = "validate", config_files = {{ openapi = "{}" }}, config = {{ {extra} }} }}]
"#,
        spec.display()
    )
}

fn spec_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("petstore.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[tokio::test]
async fn json_schema_bodies_are_validated_with_every_failure_listed() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&format!(
        r#"{MAIN_LISTENER}
[upstreams.up]
targets = ["{}"]
[plugins.validate]
module = "builtin:request-validation"
[[routes]]
name = "users"
upstream = "up"
plugins = [{{ use = "validate", config = {{ body_schema = {{ type = "object", required = ["name", "email"], properties = {{ name = {{ type = "string" }}, age = {{ type = "integer", minimum = 0 }}, email = {{ type = "string", format = "email" }} }} }} }} }}]
"#,
        up.addr
    ))
    .await;
    let post = |body: &'static str, content_type: &'static str| {
        client()
            .post(gw.url("/users"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let ok = post(
        r#"{"name": "Ada O'Neil", "email": "ada@example.com", "age": 36}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);

    let bad = post(
        r#"{"name": 7, "age": -1, "email": "nope"}"#,
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let problem = json(bad).await;
    assert_eq!(problem["title"], "Bad Request");
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["detail"], "3 problems in the request");
    let mut pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort();
    assert_eq!(pointers, ["/age", "/email", "/name"], "{problem}");
    for error in problem["errors"].as_array().unwrap() {
        assert_eq!(error["in"], "body");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }

    let missing = post(r#"{"name": "x"}"#, "application/json").await.unwrap();
    let problem = json(missing).await;
    assert_eq!(problem["errors"][0]["pointer"], "");
    assert_eq!(
        problem["errors"][0]["message"],
        "\"email\" is a required property"
    );

    let wrong_type = post("name=x", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    assert_eq!(up.hits(), 1, "only the valid request reached the upstream");
}

#[tokio::test]
async fn openapi_parameters_and_bodies_are_validated_per_operation() {
    let up = Upstream::echo().await;
    let (_dir, spec) = spec_file(PETSTORE);
    let gw = Gateway::start(&openapi_config(up.addr, &spec, "")).await;
    let c = client();

    let ok = c
        .get(gw.url("/v1/pets?limit=10&tags=cat,dog"))
        .header("x-api-version", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let bad = c
        .get(gw.url("/v1/pets?limit=500&tags=cat&tags=cow"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let problem = json(bad).await;
    let errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["in"].as_str().unwrap().to_owned(),
                e["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("query".to_owned(), "limit".to_owned()),
            ("query".to_owned(), "tags".to_owned()),
            ("header".to_owned(), "x-api-version".to_owned()),
        ],
        "{problem}"
    );
    assert_eq!(problem["errors"][2]["message"], "is required");

    let bad_path = c.get(gw.url("/v1/pets/abc")).send().await.unwrap();
    assert_eq!(bad_path.status(), 400);
    let problem = json(bad_path).await;
    assert_eq!(problem["errors"][0]["in"], "path");
    assert_eq!(problem["errors"][0]["name"], "petId");
    assert_eq!(
        c.get(gw.url("/v1/pets/12")).send().await.unwrap().status(),
        200
    );

    let created = c
        .post(gw.url("/v1/pets"))
        .header("content-type", "application/json")
        .body(
            json!({ "name": "Rex", "kind": "dog", "birthday": "2020-02-29", "owner": null })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let invalid = c
        .post(gw.url("/v1/pets"))
        .header("content-type", "application/json")
        .body(json!({ "name": "", "kind": "cow", "birthday": "yesterday", "extra": 1 }).to_string())
        .send()
        .await
        .unwrap();
    let problem = json(invalid).await;
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert!(
        pointers.contains(&"/name")
            && pointers.contains(&"/kind")
            && pointers.contains(&"/birthday"),
        "{problem}"
    );
    assert!(
        pointers.contains(&""),
        "additionalProperties is reported at the root: {problem}"
    );
}

#[tokio::test]
async fn unknown_operations_are_rejected_or_passed_as_configured() {
    let up = Upstream::echo().await;
    let (_dir, spec) = spec_file(PETSTORE);
    let gw = Gateway::start(&openapi_config(up.addr, &spec, "")).await;
    let resp = client().get(gw.url("/v1/owners")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        json(resp).await["detail"],
        "no operation is defined for GET /v1/owners"
    );
    let resp = client().put(gw.url("/v1/pets/3")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "DELETE, GET");
    drop(gw);

    let gw = Gateway::start(&openapi_config(
        up.addr,
        &spec,
        r#"unknown_operations = "pass""#,
    ))
    .await;
    assert_eq!(
        client()
            .get(gw.url("/v1/owners"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_edited_spec_file_reloads_the_route() {
    let up = Upstream::echo().await;
    let (_dir, spec) = spec_file(PETSTORE);
    let gw = Gateway::start(&openapi_config(up.addr, &spec, "")).await;
    assert_eq!(
        client()
            .get(gw.url("/v1/owners"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let grown = PETSTORE.replace(
        "  /pets/{petId}:",
        "  /owners:\n    get: {}\n  /pets/{petId}:",
    );
    std::fs::write(&spec, grown).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client()
            .get(gw.url("/v1/owners"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edited spec was never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken spec is refused and the last good one keeps serving.
    std::fs::write(&spec, "openapi: 2.0\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        client()
            .get(gw.url("/v1/owners"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let failed = gw.find_log(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("OpenAPI 3.0 or 3.1"))
    });
    assert!(
        failed.is_some(),
        "the refused reload is logged with the reason"
    );
}

#[tokio::test]
async fn spec_problems_fail_the_config_with_a_clear_message() {
    let up = Upstream::echo().await;
    let missing = std::path::Path::new("/nonexistent/spec.yaml");
    let err = Gateway::refused(&openapi_config(up.addr, missing, "")).await;
    assert!(err.contains("route `pets`, plugin `validate`, config_files.openapi: cannot read /nonexistent/spec.yaml: No such file or directory"), "{err}");
    let (_dir, spec) = spec_file(
        "openapi: 3.0.0\npaths: { /x: { get: { parameters: [{ name: a, in: body }] } } }\n",
    );
    let err = Gateway::refused(&openapi_config(up.addr, &spec, "")).await;
    assert!(
        err.contains("key `openapi`: paths./x.get: parameter `a`: unknown `in: Some(\"body\")`"),
        "{err}"
    );
}
