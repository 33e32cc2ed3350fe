//! Reading numeric CSV for `haechi model fit` and `haechi model score`.

use std::path::Path;

use ndarray::{Array1, Array2};

use crate::errors::TrainingError;

/// Which column holds the label, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelColumn {
    None,
    Last,
    Named(String),
}

impl std::str::FromStr for LabelColumn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "" | "none" => LabelColumn::None,
            "last" => LabelColumn::Last,
            name => LabelColumn::Named(name.to_owned()),
        })
    }
}

/// A numeric table: features, labels if asked for, and column names.
#[derive(Debug, Clone)]
pub struct Table {
    pub features: Array2<f64>,
    pub labels: Option<Array1<f64>>,
    pub names: Vec<String>,
}

/// Read a CSV: lines starting with `#` are skipped; a first row that is not
/// numeric is a header; the label column is left out of the features.
///
/// # Errors
/// [`TrainingError::Csv`] naming the line and column of a bad value or a row
/// of the wrong width; [`TrainingError::Io`] when the file cannot be read.
pub fn read_csv(path: &Path, label: &LabelColumn) -> Result<Table, TrainingError> {
    let file = path.display().to_string();
    let csv_err = |line: u64, column: usize, message: String| TrainingError::Csv { file: file.clone(), line, column, message };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).comment(Some(b'#')).flexible(true).trim(csv::Trim::All).from_path(path).map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(io) => TrainingError::Io(io),
        other => TrainingError::Data(format!("{other:?}")),
    })?;
    let mut names: Option<Vec<String>> = None;
    let mut width = None;
    let mut values: Vec<f64> = Vec::new();
    let mut rows = 0usize;
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            csv_err(line, 0, e.to_string())
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        if width.is_none() && names.is_none() && record.iter().any(|f| f.parse::<f64>().is_err()) {
            names = Some(record.iter().map(str::to_owned).collect());
            width = Some(record.len());
            continue;
        }
        let w = *width.get_or_insert(record.len());
        if record.len() != w {
            return Err(csv_err(line, record.len().min(w) + 1, format!("{} columns, expected {w}", record.len())));
        }
        for (c, field) in record.iter().enumerate() {
            let v: f64 = field.parse().map_err(|_| csv_err(line, c + 1, format!("`{field}` is not a number")))?;
            if !v.is_finite() {
                return Err(csv_err(line, c + 1, format!("`{field}` is not a finite number")));
            }
            values.push(v);
        }
        rows += 1;
    }
    let width = width.ok_or_else(|| TrainingError::Data(format!("{file}: no rows")))?;
    if rows == 0 {
        return Err(TrainingError::Data(format!("{file}: a header but no rows")));
    }
    let names = names.unwrap_or_else(|| (0..width).map(|i| format!("x{i}")).collect());
    let label_at = match label {
        LabelColumn::None => None,
        LabelColumn::Last => Some(width - 1),
        LabelColumn::Named(n) => Some(names.iter().position(|x| x == n).ok_or_else(|| TrainingError::Data(format!("{file}: no column named `{n}` (columns: {})", names.join(", "))))?),
    };
    let all = Array2::from_shape_vec((rows, width), values).map_err(|e| TrainingError::Data(e.to_string()))?;
    let keep: Vec<usize> = (0..width).filter(|c| Some(*c) != label_at).collect();
    if keep.is_empty() {
        return Err(TrainingError::Data(format!("{file}: no feature columns besides the label")));
    }
    Ok(Table {
        features: all.select(ndarray::Axis(1), &keep),
        labels: label_at.map(|c| all.column(c).to_owned()),
        names: keep.iter().map(|&c| names[c].clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("haechi-csv-{}-{}.csv", std::process::id(), xxhash_rust::xxh3::xxh3_64(text.as_bytes())));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn comments_header_and_label() {
        let p = write("# source\n# more\na,b,label\n1,2,0\n3,4,1\n");
        let t = read_csv(&p, &LabelColumn::Last).unwrap();
        assert_eq!(t.features.dim(), (2, 2));
        assert_eq!(t.names, vec!["a", "b"]);
        assert_eq!(t.labels.unwrap().to_vec(), vec![0.0, 1.0]);
        let t = read_csv(&p, &LabelColumn::Named("a".into())).unwrap();
        assert_eq!(t.names, vec!["b", "label"]);
    }

    #[test]
    fn bad_rows_name_line_and_column() {
        let p = write("1,2,3\n4,x,6\n");
        let e = read_csv(&p, &LabelColumn::None).unwrap_err().to_string();
        assert!(e.contains("line 2, column 2") && e.contains("`x`"), "{e}");
        let p = write("1,2,3\n4,5\n");
        let e = read_csv(&p, &LabelColumn::None).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("2 columns, expected 3"), "{e}");
        let p = write("a,b\n1,2\n");
        assert!(read_csv(&p, &LabelColumn::Named("zz".into())).unwrap_err().to_string().contains("no column named `zz`"));
        let p = write("# only a comment\n");
        assert!(read_csv(&p, &LabelColumn::None).is_err());
    }
}
