//! A [`Report`] as files a maintainer reads: `index.html` (per file, the share of its
//! instrumented lines reached, linking to the file's source with every line marked),
//! `summary.txt` (per file and per function), and one page per source file.

use std::path::{Path, PathBuf};

use super::report::{FileCover, Report};
use super::CoverError;

const STYLE: &str = "body{font-family:sans-serif}table{border-collapse:collapse}\
td,th{padding:1px 8px;text-align:left}pre{margin:0}\
.c{background:#c8f0c8}.g{background:#c8e0f8}.u{background:#f6c6c6}.n{color:#888}\
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
            &file_page(file, cover, report.gcov.get(file), text.as_deref()),
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
    if !r.gcov.is_empty() {
        s.push_str(&format!("\n# {GCOV_NOTE}\n"));
        let (mut te, mut tt) = (0, 0);
        for (file, g) in &r.gcov {
            let (e, t) = g.counts_of(&g.total);
            te += e;
            tt += t;
            s.push_str(&format!("\n{e:>5}/{t:<5} {:5.1}%  {file}\n", percent(e, t)));
            for (func, lines) in &g.functions {
                let (e, t) = g.counts_of(lines);
                s.push_str(&format!("  {e:>5}/{t:<5} {:5.1}%  {func}\n", percent(e, t)));
            }
        }
        s.push_str(&format!(
            "\n{te:>5}/{tt:<5} {:5.1}%  total (gcov)\n",
            percent(te, tt)
        ));
    }
    s
}

const GCOV_NOTE: &str = "GCOV: lines with code as gcov counts them, executed in any context \
     (interrupts, kworkers, boot-time init) by the boot and the programs; vfio-ccw's profiled \
     objects only";

fn index_page(r: &Report) -> String {
    let mut h = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ccwrig cover</title>\
         <style>{STYLE}</style></head><body><h1>Kernel line coverage</h1>"
    );
    for l in header(r) {
        h.push_str(&format!("<p>{}</p>", escape(&l)));
    }
    if !r.gcov.is_empty() {
        h.push_str(&format!("<p>{}</p>", escape(GCOV_NOTE)));
    }
    h.push_str("<table><tr><th>file</th><th>covered</th><th>lines</th><th>%</th><th>gcov executed</th><th>gcov lines</th><th>%</th></tr>");
    for (file, f) in &r.files {
        let (c, t) = f.counts();
        let g = match r.gcov.get(file) {
            Some(g) => {
                let (e, t) = g.counts_of(&g.total);
                format!("<td>{e}</td><td>{t}</td><td>{:.1}</td>", percent(e, t))
            }
            None => "<td></td><td></td><td></td>".into(),
        };
        h.push_str(&format!(
            "<tr><td><a href=\"src/{}\">{}</a></td><td>{c}</td><td>{t}</td><td>{:.1}</td>{g}</tr>",
            page_name(file),
            escape(file),
            percent(c, t)
        ));
    }
    h.push_str("</table></body></html>\n");
    h
}

/// The source with each instrumented line marked covered (`c`), executed as only GCOV saw
/// (`g`: another context) or not reached (`u`), and the file's functions with their shares on
/// top.
fn file_page(
    file: &str,
    f: &FileCover,
    gcov: Option<&super::gcov::FileLines>,
    text: Option<&str>,
) -> String {
    let (c, t) = f.counts();
    let gcov_share = gcov.map_or(String::new(), |g| {
        let (e, t) = g.counts_of(&g.total);
        format!(
            "; GCOV: {e}/{t} lines with code executed ({:.1}%), \
             <span class=\"g\">executed, seen by GCOV only</span>",
            percent(e, t)
        )
    });
    let mut h = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>{STYLE}</style></head><body><h1>{0}</h1><p>{c}/{t} instrumented lines covered \
         ({1:.1}%); <span class=\"c\">covered</span> <span class=\"u\">not reached</span>{gcov_share}; \
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
        let executed = gcov.is_some_and(|g| g.executed.contains(&n));
        let has_code = gcov.is_some_and(|g| g.total.contains(&n));
        let class = match (f.lines.get(&n), executed) {
            (Some(true), _) => "c",
            (_, true) => "g",
            (Some(false), false) => "u",
            (None, false) if has_code => "u",
            (None, false) => "n",
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
            gcov: BTreeMap::new(),
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
        let src = "int a;\nif (a < b)\n  b();\nreturn;\n";
        let h = file_page("x.c", &f, None, Some(src));
        assert!(h.contains("<tr id=\"L2\" class=\"c\">"), "{h}");
        assert!(h.contains("if (a &lt; b)"), "{h}");
        assert!(h.contains("<tr id=\"L3\" class=\"u\">"), "{h}");
        assert!(h.contains("<tr id=\"L4\" class=\"n\">"), "{h}");
        // GCOV saw line 3 run (a kworker) and knows line 4 has code it never ran.
        let g = crate::coverage::gcov::FileLines {
            executed: [2, 3].into(),
            total: [2, 3, 4].into(),
            functions: Default::default(),
        };
        let h = file_page("x.c", &f, Some(&g), Some(src));
        assert!(h.contains("<tr id=\"L2\" class=\"c\">"), "{h}");
        assert!(h.contains("<tr id=\"L3\" class=\"g\">"), "{h}");
        assert!(h.contains("<tr id=\"L4\" class=\"u\">"), "{h}");
        assert!(h.contains("GCOV: 2/3 lines with code executed"), "{h}");
    }

    #[test]
    fn summary_adds_gcov_per_file_and_function() {
        let mut r = report();
        let mut g = crate::coverage::gcov::FileLines {
            executed: [5].into(),
            total: [5, 6].into(),
            functions: Default::default(),
        };
        g.functions
            .insert("vfio_ccw_sch_io_todo".into(), [5, 6].into());
        r.gcov.insert("drivers/s390/cio/vfio_ccw_drv.c".into(), g);
        let s = summary(&r);
        assert!(
            s.contains("      1/2      50.0%  vfio_ccw_sch_io_todo"),
            "{s}"
        );
        assert!(s.contains("    1/2      50.0%  total (gcov)"), "{s}");
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
