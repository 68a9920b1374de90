//! Enforcement documents open in independent readers: the PDF's text comes out of poppler's
//! `pdftotext` (Debian `poppler-utils`), the Word file is unpacked and read back with Python's
//! standard `zipfile` and `xml.etree`. A final document is stored once: the second download is
//! the same bytes, and the digest headers match them.

mod common;

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::Digest;
use shouhu_storage::enforcement::{shanghai_date, DAY_MS};

async fn download(
    s: &common::Server,
    token: &str,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        r.status(),
        r.headers().clone(),
        r.bytes().await.unwrap().to_vec(),
    )
}

fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.pdf");
    std::fs::write(&f, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-enc", "UTF-8"])
        .arg(&f)
        .arg("-")
        .output()
        .expect("pdftotext (Debian poppler-utils) is installed by scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pdftotext separates glyph runs with spaces and newlines; compare without them.
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect()
}

fn docx_text(docx: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.docx");
    std::fs::write(&f, docx).unwrap();
    let script = "import sys, zipfile, xml.etree.ElementTree as ET\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        assert z.testzip() is None\n\
        ns = '{http://schemas.openxmlformats.org/wordprocessingml/2006/main}'\n\
        root = ET.fromstring(z.read('word/document.xml'))\n\
        print(''.join(t.text or '' for t in root.iter(ns + 't')))\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_open_in_independent_readers() {
    let s = common::start(common::Engine::Sqlite).await.unwrap();
    let head = s.login("hp_head").await;
    let mut officers = Vec::new();
    for (name, cert) in [("张伟", "HP-0001"), ("李娜", "HP-0002")] {
        let (st, b) = s
            .send(
                Method::POST,
                &head,
                "/api/v1/officers",
                json!({"name": name, "certificate_no": cert, "org_unit_id": s.huangpu.id}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
        officers.push(b["id"].as_str().unwrap().to_string());
    }
    let steel = s.enterprise_id("黄浦钢结构").await;
    let (st, insp) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/inspections",
            json!({"enterprise_id": steel, "kind": "planned", "officer_ids": officers}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{insp}");
    let id = insp["id"].as_str().unwrap().to_string();
    // No record before completion.
    let (st, _, _) = download(&s, &head, &format!("/api/v1/inspections/{id}/record")).await;
    assert_eq!(st, StatusCode::CONFLICT);

    let (_, items) = s.get(&head, "/api/v1/inspection-items?page_size=2").await;
    let item = items["items"][0]["id"].as_str().unwrap().to_string();
    let item_title = items["items"][0]["title"].as_str().unwrap().to_string();
    let (st, b) = s
        .send(
            Method::PUT,
            &head,
            &format!("/api/v1/inspections/{id}/results"),
            json!({"results": [{"item_id": item, "result": "hazard"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let deadline = shanghai_date(s.state.now() + 10 * DAY_MS);
    let (st, hazard) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/inspections/{id}/hazards"),
            json!({"item_id": item, "level": "major", "description": "除尘系统未设置泄爆装置", "rectification_deadline": deadline}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{hazard}");
    let (st, done) = s
        .send(
            Method::POST,
            &head,
            &format!("/api/v1/inspections/{id}/complete"),
            json!({"summary": "发现重大事故隐患1项"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let record_no = done["record_number"].as_str().unwrap().to_string();

    // The inspection record as PDF: text extracted by poppler.
    let (st, h, pdf) = download(
        &s,
        &head,
        &format!("/api/v1/inspections/{id}/record?format=pdf"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/pdf");
    assert!(pdf.starts_with(b"%PDF-1.7"));
    assert_eq!(
        h["x-content-sha256"].to_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&pdf))
    );
    let text = pdf_text(&pdf);
    for want in [
        "现场检查记录",
        record_no.as_str(),
        "黄浦钢结构有限公司",
        "张伟（HP-0001）",
        "除尘系统未设置泄爆装置",
        "重大事故隐患",
        "黄浦区大队",
    ] {
        let want: String = want.split_whitespace().collect();
        assert!(
            text.contains(&want),
            "{want} missing from the PDF text: {text}"
        );
    }
    let title: String = item_title.split_whitespace().collect();
    assert!(
        text.contains(&title[..title.len().min(30)]),
        "item title missing: {text}"
    );
    // The font is a subset: the whole CJK font is megabytes, the document far less.
    assert!(pdf.len() < 200_000, "{} bytes", pdf.len());
    // Stored once: the second download is the same bytes.
    let (_, _, again) = download(&s, &head, &format!("/api/v1/inspections/{id}/record")).await;
    assert_eq!(again, pdf);
    assert_eq!(s.audit("document.render").await.len(), 1);

    // The same record as Word, read back with Python's zipfile.
    let (st, h, docx) = download(
        &s,
        &head,
        &format!("/api/v1/inspections/{id}/record?format=docx"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    let text = docx_text(&docx);
    assert!(
        text.contains("现场检查记录")
            && text.contains(&record_no)
            && text.contains("黄浦钢结构有限公司"),
        "{text}"
    );

    // The rectification order names the deadline.
    let hid = hazard["id"].as_str().unwrap();
    let (st, _, pdf) = download(&s, &head, &format!("/api/v1/hazards/{hid}/order")).await;
    assert_eq!(st, StatusCode::OK);
    let text = pdf_text(&pdf);
    let (y, rest) = deadline.split_at(4);
    let m: u32 = rest[1..3].parse().unwrap();
    let d: u32 = rest[4..6].parse().unwrap();
    let cn = format!("{y}年{m}月{d}日");
    assert!(
        text.contains("责令限期整改指令书") && text.contains(&cn),
        "{cn} missing: {text}"
    );
    assert!(
        text.contains(hazard["order_number"].as_str().unwrap()),
        "{text}"
    );
    // No re-inspection opinion before the re-inspection; another district sees nothing.
    let (st, _, _) = download(
        &s,
        &head,
        &format!("/api/v1/hazards/{hid}/reinspection-opinion"),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let xh = s.login("xh_head").await;
    let (st, _, _) = download(&s, &xh, &format!("/api/v1/hazards/{hid}/order")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = download(
        &s,
        &head,
        &format!("/api/v1/hazards/{hid}/order?format=odt"),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // A batch: the record of the completed inspection plus an id that is not one; the progress
    // is polled until the archive is ready, which holds the same stored bytes and SHA256SUMS.
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/document-batches",
            json!({"kind": "inspection_records", "ids": [id, "no-such-inspection"]}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let batch = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["total"], 2);
    let status = s.wait_batch(&head, b).await;
    assert_eq!(status["done"], 2);
    assert_eq!(status["failed"][0]["id"], "no-such-inspection", "{status}");
    let (st, _) = s
        .get(&xh, &format!("/api/v1/document-batches/{batch}"))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a batch is its owner's");
    let (st, h, zip) = download(
        &s,
        &head,
        &format!("/api/v1/document-batches/{batch}/archive"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/zip");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("b.zip");
    std::fs::write(&f, &zip).unwrap();
    let script = "import sys, zipfile, hashlib\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        assert z.testzip() is None\n\
        sums = z.read('SHA256SUMS').decode().splitlines()\n\
        assert len(sums) == 1, sums\n\
        for line in sums:\n\
        \x20   digest, name = line.split('  ', 1)\n\
        \x20   assert hashlib.sha256(z.read(name)).hexdigest() == digest, name\n\
        \x20   print(digest, name)\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    let (_, _, record_pdf) = download(&s, &head, &format!("/api/v1/inspections/{id}/record")).await;
    assert!(
        listed.starts_with(&hex::encode(sha2::Sha256::digest(&record_pdf))),
        "{listed}"
    );
    assert!(listed.contains(&record_no), "{listed}");
    let (st, b) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/document-batches",
            json!({"kind": "everything", "ids": []}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["errors"].as_array().unwrap().len(), 2, "{b}");

    // Photos of checked items: uploaded as attachments, listed on the result, served only for
    // the inspection that lists them, to its units.
    let png: Vec<u8> = [&b"\x89PNG\r\n\x1a\n"[..], &[7u8; 64][..]].concat();
    let key = s.upload_attachment(&head, png.clone()).await;
    let (st, second) = s
        .send(
            Method::POST,
            &head,
            "/api/v1/inspections",
            json!({"enterprise_id": steel, "kind": "complaint", "officer_ids": officers}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let id2 = second["id"].as_str().unwrap().to_string();
    let (st, b) = s
        .send(
            Method::PUT,
            &head,
            &format!("/api/v1/inspections/{id2}/results"),
            json!({"results": [{"item_id": item, "result": "pass", "photo_keys": [key]}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let photo = format!(
        "/api/v1/inspections/{id2}/photo?key={}",
        common::urlencode(&key)
    );
    let (st, h, got) = download(&s, &head, &photo).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(got, png);
    let (st, _, _) = download(&s, &xh, &photo).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = download(
        &s,
        &head,
        &format!(
            "/api/v1/inspections/{id}/photo?key={}",
            common::urlencode(&key)
        ),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "not listed on that inspection");
}

/// Document batches are bounded (issue 21 item 4): the node renders `documents.batch_workers`
/// at once and the rest wait `queued`; an account has at most `documents.max_open_batches`
/// queued or running (one more is `429 too_many_batches`, other accounts are not held up by
/// it), and keeps that many finished archives (its oldest goes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_batches_are_queued_and_bounded_per_account() {
    let s = common::start(common::Engine::Sqlite).await.unwrap();
    let head = s.login("hp_head").await;
    let other = s.login("xh_head").await;
    let start = |token: String, n: u32| {
        let s = &s;
        async move {
            s.send(
                Method::POST,
                &token,
                "/api/v1/document-batches",
                json!({"kind": "inspection_records", "ids": [format!("no-such-inspection-{n}")]}),
            )
            .await
        }
    };
    // Every worker busy (the test holds the slots): batches wait.
    let workers = s.state.cfg.documents.batch_workers as u32;
    let hold = s
        .state
        .batches
        .worker_slots()
        .acquire_many(workers)
        .await
        .unwrap();
    let mut mine = Vec::new();
    for n in 0..s.state.cfg.documents.max_open_batches as u32 {
        let (st, b) = start(head.clone(), n).await;
        assert_eq!(st, StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["queued"], true, "{b}");
        mine.push(b);
    }
    let (st, b) = start(head.clone(), 99).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["code"], "too_many_batches", "{b}");
    assert!(b["message"].as_str().unwrap().contains("document batches"));
    let (st, theirs) = start(other.clone(), 100).await;
    assert_eq!(
        st,
        StatusCode::ACCEPTED,
        "another account is not held up: {theirs}"
    );
    let id = mine[0]["id"].as_str().unwrap();
    let (_, still) = s
        .get(&head, &format!("/api/v1/document-batches/{id}"))
        .await;
    assert_eq!(
        (still["queued"].clone(), still["done"].clone()),
        (json!(true), json!(0))
    );
    // The workers free: every batch finishes.
    drop(hold);
    let mut finished = Vec::new();
    for b in mine {
        let st = s.wait_batch(&head, b).await;
        assert_eq!(st["queued"], false, "{st}");
        finished.push(st["id"].as_str().unwrap().to_string());
    }
    s.wait_batch(&other, theirs).await;
    // One more: the account keeps its newest archives, the oldest is gone.
    let (st, b) = start(head.clone(), 200).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let newest = s.wait_batch(&head, b).await;
    finished.push(newest["id"].as_str().unwrap().to_string());
    let mut kept = 0;
    for id in &finished {
        let (st, _) = s
            .get(&head, &format!("/api/v1/document-batches/{id}"))
            .await;
        kept += usize::from(st == StatusCode::OK);
    }
    assert_eq!(kept, s.state.cfg.documents.max_open_batches, "{finished:?}");
    let (st, _) = s
        .get(
            &head,
            &format!("/api/v1/document-batches/{}", finished.last().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "the newest archive is kept");
}
