//! Reading state files written before repeats (versions 1 and 2): a run was one start per
//! instance, its values keyed by instance. Each started instance is given a repeat, in
//! the order of its id (the order its values were read in), and its values move to it;
//! the run has one repeat per instance it listed, as its configs had then.

use serde_json::{Map, Value};

/// Rewrites every run of a version 1 or 2 state, as JSON, into the shape of version 3.
pub(super) fn to_repeats(state: &mut Value) {
    let Some(watches) = state.get_mut("watches").and_then(Value::as_array_mut) else {
        return;
    };
    for run in watches
        .iter_mut()
        .filter_map(|w| w.get_mut("runs").and_then(Value::as_array_mut))
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        run_to_repeats(run);
    }
}

fn run_to_repeats(run: &mut Map<String, Value>) {
    // Version 1 listed the started ids; their time is the run's, fixed up by `parse`.
    if let Some(Value::Array(ids)) = run.get("instances") {
        let parts: Map<String, Value> = ids
            .iter()
            .filter_map(Value::as_str)
            .map(|id| {
                let part = serde_json::json!({"part": "started", "at": "1970-01-01T00:00:00Z"});
                (id.to_owned(), part)
            })
            .collect();
        run.insert("instances".into(), Value::Object(parts));
    }
    let mut ids: Vec<String> = Vec::new();
    if let Some(Value::Object(parts)) = run.get_mut("instances") {
        let mut keys: Vec<String> = parts.keys().cloned().collect();
        keys.sort();
        for id in keys {
            let part = parts.get_mut(&id).and_then(Value::as_object_mut);
            let Some(part) = part else { continue };
            let started = matches!(
                part.get("part").and_then(Value::as_str),
                Some("started" | "accepted")
            );
            if started {
                ids.push(id);
                part.insert("repeat".into(), Value::from(ids.len()));
            }
        }
    }
    if let Some(Value::Object(values)) = run.get_mut("values") {
        for by_instance in values.values_mut().filter_map(Value::as_object_mut) {
            let mut by_repeat = Map::new();
            let mut keys: Vec<String> = by_instance.keys().cloned().collect();
            keys.sort();
            for id in keys {
                // A value of an instance no longer listed still counts, as it did.
                let repeat = match ids.iter().position(|i| *i == id) {
                    Some(p) => p + 1,
                    None => {
                        ids.push(id.clone());
                        ids.len()
                    }
                };
                by_repeat.insert(repeat.to_string(), by_instance[&id].clone());
            }
            *by_instance = by_repeat;
        }
    }
    // What a run before repeats meant: one per machine of its pool, whatever it lists.
    run.insert("repeats".into(), Value::from(0));
}
