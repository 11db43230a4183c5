//! The JSON-lines protocol (CONF-4): one request per line on stdin, one reply per line on stdout,
//! flushed after each; logging goes to stderr.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use crate::json::{self, int, obj, str, Value};
use crate::npy::{itemsize, read_raw, write_npy, Tensor};
use crate::ops::{self, Request, OPERATIONS};
use crate::Failure;

/// Read every tensor input of a run request (CONF-4.3); directory inputs are not used here.
fn read_inputs(inputs: &Value) -> Result<HashMap<String, Tensor>, String> {
    let mut map = HashMap::new();
    for (name, d) in inputs.as_obj().unwrap_or(&[]) {
        if d.get("dir").is_some() {
            continue;
        }
        let field = |k: &str| d.get(k).ok_or_else(|| format!("input {name}: no {k}"));
        let path = field("path")?.as_str().ok_or("path is not a string")?;
        let dtype = field("dtype")?.as_str().ok_or("dtype is not a string")?;
        let num = |k: &str| -> Result<u64, String> {
            field(k)?.as_int_literal().and_then(|i| u64::try_from(i).ok()).ok_or_else(|| format!("input {name}: bad {k}"))
        };
        let shape = field("shape")?
            .as_arr()
            .ok_or("shape is not a list")?
            .iter()
            .map(|s| s.as_int_literal().and_then(|i| usize::try_from(i).ok()).ok_or("bad shape"))
            .collect::<Result<Vec<_>, _>>()?;
        let nbytes = num("nbytes")? as usize;
        if itemsize(dtype).map(|s| s * shape.iter().product::<usize>()) != Some(nbytes) {
            return Err(format!("input {name}: {nbytes} bytes do not hold {dtype} {shape:?}"));
        }
        let t = read_raw(path, num("offset")?, nbytes, dtype, shape)
            .map_err(|e| format!("cannot read input {name} from {path}: {e}"))?;
        map.insert(name.clone(), t);
    }
    Ok(map)
}

/// Write each produced output the request asks for, as a .npy file at its path (CONF-4.4).
fn write_outputs(requested: &Value, produced: &[(String, Tensor)]) -> Result<(), String> {
    for (name, t) in produced {
        if let Some(path) = requested.get(name).and_then(|o| o.get("path")).and_then(Value::as_str) {
            write_npy(path, t).map_err(|e| format!("cannot write output {name} to {path}: {e}"))?;
        }
    }
    Ok(())
}

fn handle_run(msg: &Value) -> Value {
    let seq = msg.get("seq").cloned().unwrap_or(Value::Null);
    let op = msg.get("operation").and_then(Value::as_str).unwrap_or("");
    let reply = |kind: &str, body: Value| Value::Obj(vec![("seq".into(), seq.clone()), (kind.into(), body)]);
    if !OPERATIONS.contains(&op) {
        return reply("skipped", obj(vec![("reason", str(&format!("operation {op} is not offered")))]));
    }
    let inputs = match read_inputs(msg.get("inputs").unwrap_or(&Value::Null)) {
        Ok(m) => m,
        Err(e) => return reply("errored", obj(vec![("message", str(&e))])),
    };
    let empty = Value::Obj(vec![]);
    let config = match msg.get("config") {
        None | Some(Value::Null) => None,
        Some(c) => Some(c),
    };
    let req = Request { config, params: msg.get("params").unwrap_or(&empty), inputs };
    // A panic is a harness failure of this case alone: answer `errored` and keep serving.
    let result = std::panic::catch_unwind(|| ops::run(op, &req))
        .unwrap_or_else(|_| Err(Failure::Errored(format!("rust_router panicked in {op}"))));
    match result {
        Ok(outputs) => match write_outputs(msg.get("outputs").unwrap_or(&empty), &outputs) {
            Ok(()) => reply("result", obj(vec![])),
            Err(e) => reply("errored", obj(vec![("message", str(&e))])),
        },
        Err(Failure::Rejected(r)) => reply(
            "result",
            obj(vec![("error", obj(vec![("code", str(r.code)), ("message", str(&r.message))]))]),
        ),
        Err(Failure::Skipped(why)) => reply("skipped", obj(vec![("reason", str(&why))])),
        Err(Failure::Errored(why)) => reply("errored", obj(vec![("message", str(&why))])),
    }
}

/// Serve requests until `stop` or end of input; the process exit status.
pub fn serve() -> i32 {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 1 };
        if line.trim().is_empty() {
            continue;
        }
        let msg = match json::parse(&line) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("rust_router: unreadable message: {e}");
                return 1;
            }
        };
        let reply = match msg.get("cmd").and_then(Value::as_str) {
            Some("start") => obj(vec![
                ("ok", Value::Bool(true)),
                (
                    "implementation",
                    obj(vec![
                        ("name", str("rust-router")),
                        ("version", str("0.1")),
                        ("language", str("rust")),
                        ("operations", Value::Arr(OPERATIONS.iter().map(|o| str(o)).collect())),
                    ]),
                ),
            ]),
            Some("stop") => return 0,
            Some("run") => handle_run(&msg),
            other => {
                eprintln!("rust_router: unknown command {other:?}");
                obj(vec![("seq", int(0)), ("errored", obj(vec![("message", str("unknown command"))]))])
            }
        };
        if writeln!(stdout, "{}", json::to_string(&reply)).and_then(|_| stdout.flush()).is_err() {
            return 1;
        }
    }
    0
}
