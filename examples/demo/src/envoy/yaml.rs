//! JSON values to readable YAML, the one serialisation every generated file
//! goes through.

use serde_json::Value;

/// `value` as a YAML document (block style, no leading `---`), preceded by
/// `header` as `#` comment lines.
pub(crate) fn document(header: &[&str], value: &Value) -> String {
    let mut out = String::new();
    for line in header {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&to_yaml(value));
    out
}

/// `value` as YAML. Serialising a `serde_json::Value` cannot really fail;
/// should it, the JSON text is returned instead, which is valid YAML too.
pub(crate) fn to_yaml(value: &Value) -> String {
    match serde_yaml_ng::to_string(value) {
        Ok(yaml) => yaml,
        Err(_) => {
            let mut json = serde_json::to_string_pretty(value).unwrap_or_default();
            json.push('\n');
            json
        }
    }
}
