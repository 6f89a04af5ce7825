//! The API's OpenAPI 3 description, served at `/openapi.json`.

use serde_json::{json, Value};

fn deployment_param() -> Value {
    json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"}})
}

fn errors() -> Value {
    json!({
        "401": {"description": "missing or wrong bearer token"},
        "404": {"description": "no such deployment", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "409": {"description": "the deployment is locked by another run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "413": {"description": "request body larger than 1 MiB"},
        "500": {"description": "the operation failed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    })
}

fn merged(ok: Value) -> Value {
    let mut all = errors();
    if let (Some(map), Some(ok)) = (all.as_object_mut(), ok.as_object()) {
        for (k, v) in ok {
            map.insert(k.clone(), v.clone());
        }
    }
    all
}

pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "flotilla API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The flotilla engine over HTTP: deployments, status, plan, scale, heal, outputs, an Alertmanager webhook and Prometheus metrics."
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "kind": {"type": "string"}, "message": {"type": "string"}}}}}
            }
        },
        "paths": {
            "/healthz": {"get": {"summary": "liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/openapi.json": {"get": {"summary": "this document", "security": [], "responses": {"200": {"description": "OpenAPI 3"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (OpenMetrics text)", "responses": merged(json!({"200": {"description": "metrics"}}))}},
            "/v1/deployments": {"get": {"summary": "every deployment under the home", "responses": merged(json!({"200": {"description": "a list of {deployment, provider, cluster, nodes, updated_at, last_run}"}}))}},
            "/v1/deployments/{name}": {"get": {"summary": "health of every node (like `flotilla status -o json`)", "parameters": [deployment_param()], "responses": merged(json!({"200": {"description": "status report"}}))}},
            "/v1/deployments/{name}/outputs": {"get": {"summary": "the blueprint's rendered outputs", "parameters": [deployment_param()], "responses": merged(json!({"200": {"description": "name → value"}}))}},
            "/v1/deployments/{name}/plan": {"post": {"summary": "what `up` would change for the recorded blueprint and sizes", "parameters": [deployment_param()], "responses": merged(json!({"200": {"description": "up report (nothing executed)"}}))}},
            "/v1/deployments/{name}/scale": {"post": {
                "summary": "resize groups (like `flotilla scale`)",
                "parameters": [deployment_param()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["groups"], "properties": {
                    "groups": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 1000}},
                    "allow_delete": {"type": "boolean", "default": false, "description": "scale-in deletes machines only when true"}}}}}},
                "responses": merged(json!({"200": {"description": "up report"}, "400": {"description": "unknown group, even manager count, deletion not allowed"}}))}},
            "/v1/deployments/{name}/heal": {"post": {
                "summary": "observe and replace unhealthy nodes (like `flotilla heal`)",
                "parameters": [deployment_param()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["dry_run"], "additionalProperties": false, "properties": {"dry_run": {"type": "boolean"}}}}}},
                "responses": merged(json!({"200": {"description": "heal report"}, "409": {"description": "locked, or refused by a guard (the report says why)"}}))}},
            "/v1/alerts": {"post": {
                "summary": "Alertmanager webhook (payload version 4): firing alerts labelled flotilla_deployment (or deployment) start one heal per deployment; repeats while it runs, or within the deployment's health.alert_cooldown after it started, are acknowledged and counted",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": merged(json!({"200": {"description": "{heal_started[], in_progress[], cooling_down[], unknown_deployments[], ignored_alerts}"}}))}}
        }
    })
}
