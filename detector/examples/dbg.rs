use std::io::BufRead;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let p = haechi_detector::Pipeline::new(haechi_detector::Config::default()).unwrap();
    let mut s = p.scratch();
    let names: Vec<String> = args[3].split(',').map(String::from).collect();
    let slots: Vec<usize> = names.iter().map(|n| p.store().catalog().slot(n).expect(n)).collect();
    let f = std::io::BufReader::new(std::fs::File::open(&args[1]).unwrap());
    let mut feats = vec![0.0f32; p.store().catalog().len()];
    for line in f.lines() {
        let line = line.unwrap();
        let e = p.parse(line.as_bytes()).unwrap();
        let d = p.process(&e, &mut s).unwrap();
        if line.contains(&args[2]) {
            // re-read features: process wrote them into scratch; expose via warm trick is not possible, so recompute from a view
            let v = s.features();
            feats.copy_from_slice(v);
            let vals: Vec<String> = names.iter().zip(&slots).map(|(n, &i)| format!("{n}={}", feats[i])).collect();
            println!("{} {} {:?} {}", &line[20..60], d.decision.verdict.as_str(), d.decision.reasons.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(), vals.join(" "));
        }
    }
}
