//! The README's error and settings tables against the code: every error
//! kind has a row, every setting has a row with the core's default, and the
//! C header and the Python stubs have every setting.

use gopro::error_samples;
use gopro::settings::{ClientSetting, ServerSetting};

fn read(path: &str) -> String {
    let path = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_error_table_has_every_error_in_order() {
    let rows: Vec<String> = error_samples::table(&read("README.md"))
        .into_iter()
        .map(|[rust, _, _]| rust)
        .collect();
    let names: Vec<&str> = error_samples::samples()
        .iter()
        .map(error_samples::name)
        .collect();
    assert_eq!(rows, names);
}

/// The text of a Python class's block in the stub, up to the next class.
fn stub_class<'a>(stub: &'a str, class: &str) -> &'a str {
    let start = stub
        .find(&format!("class {class}:"))
        .unwrap_or_else(|| panic!("no class {class} in the stub"));
    let rest = &stub[start + 1..];
    let end = rest.find("\nclass ").map_or(stub.len(), |e| start + 1 + e);
    &stub[start..end]
}

fn check_settings(
    marker: &str,
    settings: &[(&'static str, String)],
    c_prefix: &str,
    py_classes: &[&str],
) {
    let readme = read("README.md");
    let header = read("include/gopro.h");
    let stub = read("python/gopro/_gopro.pyi");
    let rows = error_samples::readme_rows(&readme, marker);
    assert!(!rows.is_empty(), "no {marker} table in the README");
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let expected: Vec<&str> = settings.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, expected, "{marker}: one row per setting, in order");
    for (row, (name, default)) in rows.iter().zip(settings) {
        assert_eq!(row[1], *name, "{marker}: the Rust builder method of {name}");
        assert_eq!(row[4], *default, "{marker}: the default of {name}");
        // C: the setter (or the function the row names) is in the header.
        let c = row[2].split('(').next().unwrap();
        let c = if c.starts_with("gopro_") {
            c.to_string()
        } else {
            format!("{c_prefix}{c}")
        };
        assert!(
            header.contains(&format!("{c}(")),
            "{marker}: {c} is not in include/gopro.h"
        );
        // Python: a parameter of the constructor, or a method (`@server.x`).
        for class in py_classes {
            let block = stub_class(&stub, class);
            let found = if let Some(method) = row[3].strip_prefix("@server.") {
                let method = method.split('(').next().unwrap();
                block.contains(&format!("def {method}("))
            } else {
                block.contains(&format!("{}: ", row[3]))
            };
            assert!(found, "{marker}: {} is not in the stub's {class}", row[3]);
        }
    }
}

#[test]
fn the_settings_tables_have_every_setting_in_every_language() {
    let server = ServerSetting::ALL
        .iter()
        .map(|s| (s.name(), s.default_value()));
    let client = ClientSetting::ALL
        .iter()
        .map(|s| (s.name(), s.default_value()));
    for (marker, settings, c_prefix, py_classes) in [
        (
            "server-settings",
            server.collect::<Vec<_>>(),
            "gopro_server_config_",
            &["Server"][..],
        ),
        (
            "client-settings",
            client.collect(),
            "gopro_client_config_",
            &["Client", "AsyncClient"],
        ),
    ] {
        let settings: Vec<_> = settings
            .into_iter()
            .map(|(name, default)| (name, default.to_string()))
            .collect();
        check_settings(marker, &settings, c_prefix, py_classes);
    }
}
