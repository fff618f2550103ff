//! Client configurations as QR codes, for the official mobile apps' "scan from QR code": a
//! PNG for the web and a block-character rendering for a terminal.

use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module in the PNG.
const SCALE: usize = 6;
/// Light modules around the code, as the standard asks.
const QUIET: usize = 4;

/// Why a text could not become a QR code.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a QR code: {0}")]
pub struct QrError(String);

fn code(text: &str) -> Result<QrCode, QrError> {
    // Medium error correction: a config fits (well under 1 KB) and survives a scuffed screen.
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| QrError(e.to_string()))
}

/// `text` as a greyscale PNG.
pub fn png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = code(text)?;
    let modules = code.width();
    let side = (modules + 2 * QUIET) * SCALE;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| QrError(e.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| QrError(e.to_string()))?;
    writer.finish().map_err(|e| QrError(e.to_string()))?;
    Ok(out)
}

/// `text` drawn with half-block characters (two modules per character cell), dark on light.
pub fn terminal(text: &str) -> Result<String, QrError> {
    let code = code(text)?;
    let n = code.width();
    let colors = code.to_colors();
    let dark = |x: isize, y: isize| {
        x >= 0
            && y >= 0
            && (x as usize) < n
            && (y as usize) < n
            && colors[y as usize * n + x as usize] == Color::Dark
    };
    let q = QUIET as isize;
    let mut out = String::new();
    let mut y = -q;
    while y < n as isize + q {
        for x in -q..n as isize + q {
            out.push(match (dark(x, y), dark(x, y + 1)) {
                (false, false) => '\u{2588}',
                (false, true) => '\u{2580}',
                (true, false) => '\u{2584}',
                (true, true) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a PNG made by `png` with an independent QR decoder.
    fn decode(png_bytes: &[u8]) -> String {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("PNG frame");
        let (w, h) = (info.width as usize, info.height as usize);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        grids[0].decode().expect("decodes").1
    }

    #[test]
    fn a_config_comes_back_from_its_png() {
        let config = "[Interface]\nPrivateKey = oHHVf4nsQd7KyIuXwdQxVAVhN+vQA+p+kt1BbRh5Xns=\n\
                      Address = 10.77.0.2/32, fd77::2/128\n\n[Peer]\n\
                      PublicKey = HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\n\
                      Endpoint = vpn.example.com:51820\nAllowedIPs = 10.77.0.0/16, fd77::/64\n";
        assert_eq!(decode(&png(config).expect("png")), config);
    }

    #[test]
    fn the_terminal_rendering_is_square_with_a_quiet_zone() {
        let art = terminal("hello").expect("terminal");
        let lines: Vec<&str> = art.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        // Two modules per line: as many lines as half the width, rounded up.
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(
            lines[0].chars().all(|c| c == '\u{2588}'),
            "quiet zone on top"
        );
    }
}
