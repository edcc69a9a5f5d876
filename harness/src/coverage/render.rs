//! A [`Report`] as files a maintainer reads: `index.html` (per file, the share of its
//! instrumented lines reached, linking to the file's source with every line marked),
//! `summary.txt` (per file and per function), and one page per source file.

use std::path::{Path, PathBuf};

use super::report::{FileCover, Report};
use super::CoverError;

const STYLE: &str = "body{font-family:sans-serif}table{border-collapse:collapse}\
td,th{padding:1px 8px;text-align:left}pre{margin:0}\
.c{background:#c8f0c8}.u{background:#f6c6c6}.n{color:#888}\
td.num{text-align:right;color:#888}";

/// Writes `index.html`, `summary.txt` and `src/*.html` into `out`; returns the index's path.
pub fn write(report: &Report, out: &Path) -> Result<PathBuf, CoverError> {
    let src_dir = out.join("src");
    std::fs::create_dir_all(&src_dir).map_err(|source| CoverError::Write {
        path: src_dir.clone(),
        source,
    })?;
    for (file, cover) in &report.files {
        let text = report
            .src
            .as_ref()
            .and_then(|s| std::fs::read_to_string(s.join(file)).ok());
        put(
            &src_dir.join(page_name(file)),
            &file_page(file, cover, text.as_deref()),
        )?;
    }
    put(&out.join("summary.txt"), &summary(report))?;
    let index = out.join("index.html");
    put(&index, &index_page(report))?;
    Ok(index)
}

fn put(path: &Path, text: &str) -> Result<(), CoverError> {
    std::fs::write(path, text).map_err(|source| CoverError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `drivers/s390/cio/vfio_ccw_fsm.c` -> `drivers_s390_cio_vfio_ccw_fsm.c.html`.
fn page_name(file: &str) -> String {
    format!("{}.html", file.replace('/', "_"))
}

fn percent(covered: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * covered as f64 / total as f64
    }
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// The lines that say what was read and how complete it is, shared by both summaries.
fn header(r: &Report) -> Vec<String> {
    let mut h = vec![
        format!(
            "kernel {} ({})",
            r.release.as_deref().unwrap_or("?"),
            r.kernel.display()
        ),
        format!(
            "{} coverage.json files (a program's, or a fuzzing VM's union), {} traced steps ({} with a full trace buffer), {} distinct PCs, {} in {}",
            r.programs,
            r.traced,
            r.full,
            r.pcs,
            r.pcs_in_files,
            r.prefixes.join(" ")
        ),
        "lines: instrumented lines (a __sanitizer_cov_trace_pc call site's line-table row); \
         covered: reached by some traced step's own thread (work done in kworkers is not seen)"
            .to_string(),
    ];
    if r.pcs_unplaced > 0 {
        h.push(format!(
            "{} PCs in these files or unknown to the line table follow no call of the tracer \
             and could not be placed on an instrumented line{}",
            r.pcs_unplaced,
            if 2 * r.pcs_unplaced > r.pcs {
                " (most of them: is this the vmlinux the programs ran on?)"
            } else {
                ""
            }
        ));
    }
    h
}

/// Files, then each file's functions: `covered/instrumented lines percent name`.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    for l in header(r) {
        s.push_str(&format!("# {l}"));
        s.push('\n');
    }
    let (mut tc, mut tt) = (0, 0);
    for (file, f) in &r.files {
        let (c, t) = f.counts();
        tc += c;
        tt += t;
        s.push_str(&format!("\n{c:>5}/{t:<5} {:5.1}%  {file}", percent(c, t)));
        s.push('\n');
        for (func, lines) in &f.functions {
            let (c, t) = f.function_counts(lines);
            s.push_str(&format!("  {c:>5}/{t:<5} {:5.1}%  {func}", percent(c, t)));
            s.push('\n');
        }
    }
    s.push_str(&format!(
        "\n{tc:>5}/{tt:<5} {:5.1}%  total",
        percent(tc, tt)
    ));
    s.push('\n');
    s
}

fn index_page(r: &Report) -> String {
    let mut h = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ccwrig cover</title>\
         <style>{STYLE}</style></head><body><h1>Kernel line coverage</h1>"
    );
    for l in header(r) {
        h.push_str(&format!("<p>{}</p>", escape(&l)));
    }
    h.push_str("<table><tr><th>file</th><th>covered</th><th>lines</th><th>%</th></tr>");
    for (file, f) in &r.files {
        let (c, t) = f.counts();
        h.push_str(&format!(
            "<tr><td><a href=\"src/{}\">{}</a></td><td>{c}</td><td>{t}</td><td>{:.1}</td></tr>",
            page_name(file),
            escape(file),
            percent(c, t)
        ));
    }
    h.push_str("</table></body></html>\n");
    h
}

/// The source with each instrumented line marked covered (`c`) or not (`u`), and the file's
/// functions with their shares on top.
fn file_page(file: &str, f: &FileCover, text: Option<&str>) -> String {
    let (c, t) = f.counts();
    let mut h = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>{STYLE}</style></head><body><h1>{0}</h1><p>{c}/{t} instrumented lines covered \
         ({1:.1}%); <span class=\"c\">covered</span> <span class=\"u\">not reached</span>; \
         <a href=\"../index.html\">all files</a></p><table>",
        escape(file),
        percent(c, t)
    );
    for (func, lines) in &f.functions {
        let (fc, ft) = f.function_counts(lines);
        let first = lines.first().copied().unwrap_or(0);
        h.push_str(&format!(
            "<tr><td><a href=\"#L{first}\">{}</a></td><td>{fc}/{ft}</td><td>{:.1}%</td></tr>",
            escape(func),
            percent(fc, ft)
        ));
    }
    h.push_str("</table><hr><table>");
    let Some(text) = text else {
        h.push_str("</table><p>(source not available: the kernel's source tree is gone)</p>");
        for (line, covered) in &f.lines {
            h.push_str(&format!(
                "<p>{line}: {}</p>",
                if *covered { "covered" } else { "not reached" }
            ));
        }
        h.push_str("</body></html>\n");
        return h;
    };
    for (i, src) in text.lines().enumerate() {
        let n = i as u32 + 1;
        let class = match f.lines.get(&n) {
            Some(true) => "c",
            Some(false) => "u",
            None => "n",
        };
        h.push_str(&format!("<tr id=\"L{n}\" class=\"{class}\"><td class=\"num\">{n}</td><td><pre>{}</pre></td></tr>\n",
            escape(src)));
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn report() -> Report {
        let mut f = FileCover::default();
        f.lines.insert(2, true);
        f.lines.insert(3, false);
        f.functions.insert("fsm_io_request".into(), [2, 3].into());
        Report {
            kernel: "/k/bzImage".into(),
            release: Some("6.12.117".into()),
            src: None,
            prefixes: vec!["drivers/s390/cio/".into()],
            programs: 1,
            traced: 4,
            full: 0,
            pcs: 10,
            pcs_in_files: 1,
            pcs_unplaced: 0,
            files: BTreeMap::from([("drivers/s390/cio/vfio_ccw_fsm.c".to_string(), f)]),
        }
    }

    #[test]
    fn summary_counts_files_functions_and_total() {
        let s = summary(&report());
        assert!(
            s.contains("    1/2      50.0%  drivers/s390/cio/vfio_ccw_fsm.c"),
            "{s}"
        );
        assert!(s.contains("      1/2      50.0%  fsm_io_request"), "{s}");
        assert!(s.contains("    1/2      50.0%  total"), "{s}");
    }

    #[test]
    fn file_page_marks_each_instrumented_line_and_escapes_source() {
        let (_, f) = report().files.into_iter().next().unwrap();
        let h = file_page("x.c", &f, Some("int a;\nif (a < b)\n  b();\nreturn;\n"));
        assert!(h.contains("<tr id=\"L2\" class=\"c\">"), "{h}");
        assert!(h.contains("if (a &lt; b)"), "{h}");
        assert!(h.contains("<tr id=\"L3\" class=\"u\">"), "{h}");
        assert!(h.contains("<tr id=\"L4\" class=\"n\">"), "{h}");
    }

    #[test]
    fn writes_index_summary_and_a_page_per_file() {
        let d = tempfile::tempdir().unwrap();
        let index = write(&report(), d.path()).unwrap();
        let html = std::fs::read_to_string(index).unwrap();
        assert!(
            html.contains("src/drivers_s390_cio_vfio_ccw_fsm.c.html"),
            "{html}"
        );
        assert!(d.path().join("summary.txt").is_file());
        assert!(d
            .path()
            .join("src/drivers_s390_cio_vfio_ccw_fsm.c.html")
            .is_file());
    }
}
