//! `--plot FILE` on the real binaries: `ippm twping` and `ippm owping` against `ippm serve` on
//! loopback draw their delays to an SVG or a PNG.

mod common;
use common::{Daemon, IPPM};
use std::process::Command;

fn ippm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(IPPM).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The texts of an SVG.
fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_owned())
        .collect()
}

/// How many points each polyline stroked in `colour` has.
fn polylines(doc: &roxmltree::Document<'_>, colour: &str) -> Vec<usize> {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(colour))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .collect()
}

const BLUE: &str = "#1F77B4";
const RED: &str = "#D62728";

#[test]
fn twping_plots_an_svg() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start("127.0.0.1:0", &[], None);
    let svg = dir.path().join("out.svg");
    let (ok, out, err) = ippm(&[
        "twping",
        &d.addr,
        "-c",
        "25",
        "-i",
        "0.002f",
        "-L",
        "1",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("25 sent, 0 lost"), "{out}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let root = doc.root_element();
    assert_eq!(root.attribute("width"), Some("1200"));
    assert_eq!(root.attribute("height"), Some("800"));
    let texts = texts(&doc);
    let reflector = texts
        .iter()
        .find(|t| t.starts_with("TWAMP delay, unauthenticated (reflector 127.0.0.1:"))
        .unwrap_or_else(|| panic!("{texts:?}"));
    assert!(reflector.ends_with(')'), "{reflector}");
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("round trip: 25 of 25 arrived, delay ")),
        "{texts:?}"
    );
    // The round trip: a line through the 25 delays, 25 dots, a CDF of 2 × 25 points.
    let lines = polylines(&doc, BLUE);
    assert!(lines.contains(&25) && lines.contains(&50), "{lines:?}");
    let dots = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("fill") == Some(BLUE))
        .count();
    assert_eq!(dots, 25);
    // One-way series only where the clocks say they are synchronized; then both.
    let to = texts
        .iter()
        .any(|t| t.starts_with("to 127.0.0.1: 25 of 25"));
    let from = texts
        .iter()
        .any(|t| t.starts_with("from 127.0.0.1: 25 of 25"));
    assert_eq!(to, from, "{texts:?}");
    assert_eq!(polylines(&doc, RED).contains(&25), to);
}

#[test]
fn owping_plots_a_png_of_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_owamp("127.0.0.1:0", &[]);
    let png_path = dir.path().join("out.png");
    let (ok, out, err) = ippm(&[
        "owping",
        &d.addr,
        "-c",
        "30",
        "-i",
        "0.002f",
        "-L",
        "1",
        "--plot",
        png_path.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("30 sent, 0 lost").count(), 2, "{out}");
    let bytes = std::fs::read(&png_path).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes))
        .read_info()
        .unwrap();
    let mut img = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut img).unwrap();
    assert_eq!((info.width, info.height), (1200, 800));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    // "to" in blue, "from" in red, in the time panel (left of the legend) and the CDF panel.
    let count = |rgb: [u8; 3], xs: std::ops::Range<usize>, ys: std::ops::Range<usize>| {
        ys.flat_map(|y| xs.clone().map(move |x| (y * 1200 + x) * 3))
            .filter(|&i| img[i..i + 3] == rgb)
            .count()
    };
    for rgb in [[0x1f, 0x77, 0xb4], [0xd6, 0x27, 0x28]] {
        assert!(count(rgb, 80..550, 60..420) > 50, "{rgb:?}");
        assert!(count(rgb, 0..600, 470..800) > 50, "{rgb:?}");
    }

    // The SVG names the directions with the server's address.
    let svg = dir.path().join("out.svg");
    let (ok, _, err) = ippm(&[
        "owping",
        &d.addr,
        "-c",
        "5",
        "-i",
        "0.002f",
        "-t",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let texts = texts(&doc);
    let label = format!("to {}: 5 of 5 arrived", d.addr);
    assert!(texts.iter().any(|t| t.starts_with(&label)), "{texts:?}");
    assert!(!texts.iter().any(|t| t.starts_with("from ")), "{texts:?}");
}

#[test]
fn a_bad_plot_file_name_is_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("out.jpg");
    // Nothing listens on port 1: the name is refused before any connection is tried.
    for cmd in ["twping", "owping"] {
        let (ok, out, err) = ippm(&[cmd, "127.0.0.1:1", "--plot", bad.to_str().unwrap()]);
        assert!(!ok);
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains("out.jpg: unknown plot format (the file name must end in .svg or .png)"),
            "{err}"
        );
        assert!(!bad.exists());
    }
}
