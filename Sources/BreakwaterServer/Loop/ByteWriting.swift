private import CLibevent

/// Somewhere bytes are appended without building Strings: response and request heads are written
/// this way on every request, straight into a socket's output buffer (`EvbufferWriter`), and log
/// lines into an array.
protocol ByteSink {
    /// Appends raw bytes.
    mutating func append(raw bytes: UnsafeRawBufferPointer)
    /// Appends one byte.
    mutating func append(_ byte: UInt8)
}

extension ByteSink {
    /// Appends the bytes of a literal.
    @inline(__always)
    mutating func append(ascii text: StaticString) {
        append(raw: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends bytes of an array (a head's line, say).
    @inline(__always)
    mutating func append(bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { append(raw: $0) }
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
            append(raw: UnsafeRawBufferPointer(rebasing: out[(20 - count)...]))
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
        text.withUTF8 { append(raw: UnsafeRawBufferPointer($0)) }
    }
}

extension Array: ByteSink where Element == UInt8 {
    @inline(__always)
    mutating func append(raw bytes: UnsafeRawBufferPointer) {
        append(contentsOf: bytes)
    }
}

/// Writes into space reserved at the end of an evbuffer, so a head is assembled where it will be
/// sent from: no intermediate array, no copy. More space is reserved if the first reservation
/// runs out. Nothing else may touch the evbuffer until `write(into:reserving:_:)` returns.
struct EvbufferWriter: ByteSink {
    private let buffer: OpaquePointer
    private var space = iovec()
    private var used = 0

    /// Runs `body` with a writer appending to `buffer`, `reserving` bytes up front.
    static func write(into buffer: OpaquePointer, reserving size: Int, _ body: (inout EvbufferWriter) -> Void) {
        var writer = EvbufferWriter(buffer: buffer)
        writer.reserve(size)
        body(&writer)
        writer.commit()
    }

    private init(buffer: OpaquePointer) { self.buffer = buffer }

    private mutating func reserve(_ size: Int) {
        if evbuffer_reserve_space(buffer, size, &space, 1) != 1 {
            // Out of memory: nothing is reserved and appends are dropped, as a write would fail.
            space = iovec()
        }
        used = 0
    }

    private mutating func commit() {
        guard space.iov_base != nil else { return }
        space.iov_len = used
        evbuffer_commit_space(buffer, &space, 1)
        space = iovec()
    }

    private mutating func makeRoom(_ count: Int) -> Bool {
        if used + count <= space.iov_len { return true }
        commit()
        reserve(Swift.max(count, 1024))
        return used + count <= space.iov_len
    }

    @inline(__always)
    mutating func append(raw bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, makeRoom(bytes.count) else { return }
        (space.iov_base! + used).copyMemory(from: source, byteCount: bytes.count)
        used += bytes.count
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        guard makeRoom(1) else { return }
        space.iov_base!.storeBytes(of: byte, toByteOffset: used, as: UInt8.self)
        used += 1
    }
}
