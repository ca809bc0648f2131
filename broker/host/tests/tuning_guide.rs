//! Keeps `tuning/README.md` true to the checker: every check has a row in the guide's table of
//! checks, and every check the guide's recommendations point at ("Row `x`", "Rows `a`, `b`",
//! the kernel table's Row column, `disk_*` for a family) is one `spate-broker check` prints.

use spate_host::CHECK_NAMES;

fn guide() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tuning/README.md");
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {path}: {error}"))
}

/// The backticked words at the start of `text`, separated by ", ", " and " or "/", until
/// anything else: what follows "Row" or "Rows".
fn leading_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text.trim_start_matches(':').trim_start();
    while let Some(after_tick) = rest.strip_prefix('`') {
        let Some(end) = after_tick.find('`') else {
            break;
        };
        names.push(after_tick[..end].to_string());
        rest = &after_tick[end + 1..];
        let separators = [", ", " and ", "/", ","];
        match separators
            .iter()
            .find(|separator| rest.starts_with(**separator))
        {
            Some(separator) => rest = rest[separator.len()..].trim_start(),
            None => break,
        }
    }
    names
}

/// Every check name the guide's prose and tables point at.
fn referenced_names(guide: &str) -> Vec<String> {
    // Words are joined across line breaks, as a reader reads them.
    let prose = guide.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut names = Vec::new();
    for marker in ["Row ", "Rows ", "Row: ", "Rows: ", "row ", "rows "] {
        let mut from = 0;
        while let Some(found) = prose[from..].find(marker) {
            let start = from + found + marker.len();
            names.extend(leading_names(&prose[start..]));
            from = start;
        }
    }
    // Tables whose last column is headed "Row": its cells name checks.
    let mut in_row_table = false;
    for line in guide.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        if !line.trim_start().starts_with('|') {
            in_row_table = false;
            continue;
        }
        if cells.last().map(|cell| cell.trim()) == Some("Row") {
            in_row_table = true;
            continue;
        }
        if in_row_table {
            let cell = cells.last().expect("a table line has cells").trim();
            if !cell.starts_with("---") {
                names.extend(leading_names(cell));
            }
        }
    }
    names
}

fn is_check(name: &str) -> bool {
    match name.strip_suffix('*') {
        Some(prefix) => CHECK_NAMES.iter().any(|check| check.starts_with(prefix)),
        None => CHECK_NAMES.contains(&name),
    }
}

#[test]
fn every_check_has_a_row_in_the_guides_table_of_checks() {
    let guide = guide();
    let table_start = guide
        .find("| Check | Why it matters | Fix |")
        .expect("the guide has the table of checks");
    let table: Vec<&str> = guide[table_start..]
        .lines()
        .take_while(|line| line.starts_with('|'))
        .collect();
    for name in CHECK_NAMES {
        let quoted = format!("`{name}`");
        assert!(
            table.iter().any(|line| line
                .split('|')
                .nth(1)
                .is_some_and(|cell| cell.contains(&quoted))),
            "check {name} has no row in tuning/README.md's table of checks"
        );
    }
}

#[test]
fn every_row_the_guide_points_at_is_a_check() {
    let guide = guide();
    let names = referenced_names(&guide);
    assert!(
        names.len() >= 20,
        "the guide's recommendations point at checks; found only {names:?}"
    );
    let unknown: Vec<&String> = names.iter().filter(|name| !is_check(name)).collect();
    assert!(
        unknown.is_empty(),
        "tuning/README.md points at rows spate-broker check does not print: {unknown:?}"
    );
}

#[test]
fn the_parser_finds_names_and_stops_at_prose() {
    assert_eq!(
        leading_names("`a`, `b_c` and `d*` (why) `e`"),
        vec!["a", "b_c", "d*"]
    );
    let mut found = referenced_names("Rows `x`, `y`.\nRow `z` warns");
    found.sort();
    assert_eq!(found, vec!["x", "y", "z"]);
    assert!(!is_check("no_such_check"));
    assert!(is_check("disk_*"));
}
