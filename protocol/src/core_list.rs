//! The CPU-list notation shared by the broker's `--cores` and the tools' core flags: `0-3` or
//! `0,2,4-7`, in the order listed. Text only: it does not check that the CPUs exist (callers
//! pin threads and report what the machine refuses).

/// More CPUs than this in one list is a typo, not a machine.
pub const CORE_LIST_LENGTH_MAX: usize = 4096;

/// Parses a CPU list into its ids, in the order listed. Empty lists, backward ranges, ids
/// listed twice and lists longer than [`CORE_LIST_LENGTH_MAX`] are errors, worded for a user.
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (parse_core(first)?, parse_core(last)?),
            None => (parse_core(part)?, parse_core(part)?),
        };
        if last < first {
            return Err(format!("range {part} runs backwards"));
        }
        if last - first >= CORE_LIST_LENGTH_MAX {
            return Err(format!(
                "range {part} is longer than {CORE_LIST_LENGTH_MAX}"
            ));
        }
        for core in first..=last {
            if cores.contains(&core) {
                return Err(format!("core {core} is listed twice"));
            }
            cores.push(core);
        }
        if cores.len() > CORE_LIST_LENGTH_MAX {
            return Err(format!("more than {CORE_LIST_LENGTH_MAX} cores"));
        }
    }
    if cores.is_empty() {
        return Err("no cores listed".to_string());
    }
    Ok(cores)
}

fn parse_core(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .map_err(|_| format!("{text:?} is not a CPU number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_single_ids_parse_in_the_order_listed() {
        assert_eq!(parse_core_list("4-5, 0,2").unwrap(), vec![4, 5, 0, 2]);
    }

    #[test]
    fn malformed_lists_are_errors_that_say_why() {
        assert!(parse_core_list("").unwrap_err().contains("no cores"));
        assert!(parse_core_list("3-1").unwrap_err().contains("backwards"));
        assert!(parse_core_list("1,1").unwrap_err().contains("twice"));
        assert!(parse_core_list("x")
            .unwrap_err()
            .contains("not a CPU number"));
        assert!(parse_core_list("0-5000")
            .unwrap_err()
            .contains("longer than"));
    }
}
