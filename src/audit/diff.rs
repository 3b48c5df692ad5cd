//! `switchboard audit diff A B`: the difference between two stored configuration versions, file by file, as unified line diffs.

use std::path::{Path, PathBuf};

/// One file of a version: its path (relative to the main file's directory) and its text.
pub type File<'a> = (&'a Path, &'a str);

/// Unified diffs (three lines of context) of every file that differs between `a` and `b`,
/// matched by path: first the files of `a` in their order, then those only in `b`. A file
/// missing on one side is diffed against nothing (`/dev/null`, as `diff -N` and git show it).
/// Empty when every file is the same.
pub fn unified<'a>(a_label: &str, b_label: &str, a: &[File<'a>], b: &[File<'a>]) -> String {
    let mut paths: Vec<&Path> = Vec::new();
    for (p, _) in a.iter().chain(b) {
        if !paths.contains(p) {
            paths.push(p);
        }
    }
    let mut out = String::new();
    for p in paths {
        let find = |files: &[File<'a>]| files.iter().find(|(q, _)| *q == p).map(|f| f.1);
        let (old, new) = (find(a), find(b));
        if old == new {
            continue;
        }
        let name = |side: &str, present: bool| -> String {
            if present {
                format!("{side}/{}", p.display())
            } else {
                "/dev/null".to_owned()
            }
        };
        let diff = similar::TextDiff::from_lines(old.unwrap_or(""), new.unwrap_or(""));
        let header_a = format!("{} ({a_label})", name("a", old.is_some()));
        let header_b = format!("{} ({b_label})", name("b", new.is_some()));
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .missing_newline_hint(true)
                .header(&header_a, &header_b)
                .to_string(),
        );
    }
    out
}

/// Owned form of `File`, for callers that read versions from the store.
pub fn borrow(files: &[(PathBuf, String)]) -> Vec<File<'_>> {
    files
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_added_and_removed_files_show_as_unified_diffs() {
        let main = Path::new("switchboard.toml");
        let svc = Path::new("probes/a.toml");
        let new_svc = Path::new("probes/b.toml");
        let a = [
            (main, "x = 1\ny = 2\nz = 3\n"),
            (svc, "[service]\nid = \"a\"\n"),
        ];
        let b = [(main, "x = 1\ny = 5\nz = 3\n"), (new_svc, "[service]\n")];
        let d = unified("v1", "v2", &a, &b);
        assert_eq!(
            d,
            "--- a/switchboard.toml (v1)\n+++ b/switchboard.toml (v2)\n@@ -1,3 +1,3 @@\n x = 1\n-y = 2\n+y = 5\n z = 3\n\
             --- a/probes/a.toml (v1)\n+++ /dev/null (v2)\n@@ -1,2 +0,0 @@\n-[service]\n-id = \"a\"\n\
             --- /dev/null (v1)\n+++ b/probes/b.toml (v2)\n@@ -0,0 +1 @@\n+[service]\n"
        );
        assert_eq!(unified("v1", "v1", &a, &a), "");
    }
}
