/// Appending to a byte buffer without building Strings: response and request heads are written
/// this way on every request.
extension Array where Element == UInt8 {
    /// Appends the bytes of a literal.
    @inline(__always)
    mutating func append(ascii text: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends a non-negative integer in decimal.
    mutating func append(decimal value: Int) {
        if value < 10 {
            append(UInt8(truncatingIfNeeded: value) + 0x30)
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = value
        var count = 0
        Swift.withUnsafeMutableBytes(of: &digits) { out in
            while n > 0 && count < 20 {
                out[19 - count] = UInt8(truncatingIfNeeded: n % 10) + 0x30
                n /= 10
                count += 1
            }
            append(contentsOf: out[(20 - count)...])
        }
    }

    /// Appends a non-negative integer in decimal with leading zeros up to `width` digits.
    mutating func append(digits value: Int, width: Int) {
        var magnitude = 10
        for _ in 1..<Swift.max(width, 1) {
            if value < magnitude { append(0x30) }
            magnitude *= 10
        }
        append(decimal: value)
    }

    /// Appends a string's UTF-8 bytes.
    mutating func append(utf8 text: String) {
        var text = text
        text.withUTF8 { append(contentsOf: $0) }
    }
}
