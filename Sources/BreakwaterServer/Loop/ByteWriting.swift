private import CLibevent

/// Somewhere bytes are appended without building Strings: response and request heads are written
/// this way on every request, straight into a socket's output buffer (`EvbufferWriter`), and log
/// lines into an array.
protocol ByteSink {
    /// Appends raw bytes.
    mutating func append(raw bytes: UnsafeRawBufferPointer)
    /// Appends one byte.
    mutating func append(_ byte: UInt8)
    /// Appends a non-negative integer in decimal (a sink may write it in place).
    mutating func append(decimal value: Int)
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

/// Bytes assembled in an array's own storage, kept filled to its capacity while the first `count`
/// bytes are in use: an append is a bounds check and a copy, where `Array.append(contentsOf:)`
/// takes its generic path each time. `take` hands over exactly the bytes written.
struct ByteBuilder: ByteSink {
    private var storage: [UInt8] = []
    /// How many bytes were written.
    private(set) var count = 0

    /// A builder with room for `capacity` bytes before it grows.
    init(capacity: Int = 0) {
        if capacity > 0 { storage = [UInt8](repeating: 0, count: capacity) }
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    mutating func append(raw bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return }
        if count + bytes.count > storage.count { grow(to: count + bytes.count) }
        let at = count
        storage.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: at).copyMemory(from: source, byteCount: bytes.count) }
        count += bytes.count
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        if count == storage.count { grow(to: count + 1) }
        storage[count] = byte
        count += 1
    }

    /// Appends the bytes of a collection: at once where they are contiguous, else one by one.
    @inline(__always)
    mutating func append(contentsOf bytes: some Collection<UInt8>) {
        if bytes.withContiguousStorageIfAvailable({ append(raw: UnsafeRawBufferPointer($0)) }) == nil {
            for byte in bytes { append(byte) }
        }
    }

    /// Room for `capacity` bytes in all before the storage grows.
    mutating func reserveCapacity(_ capacity: Int) {
        if capacity > storage.count { grow(to: capacity) }
    }

    /// Forgets the bytes written, keeping the storage.
    mutating func removeAll() { count = 0 }

    /// Lower-cases the ASCII letters among the bytes written in `range`, in place.
    mutating func lowercaseASCII(_ range: Range<Int>) {
        storage.withUnsafeMutableBufferPointer { bytes in
            for i in range where bytes[i] &- 0x41 < 26 { bytes[i] |= 0x20 }
        }
    }

    /// Appends a copy of bytes written before, those in `range`.
    mutating func append(copyOf range: Range<Int>) {
        assert(range.lowerBound >= 0 && range.upperBound <= count, "a range of bytes not written")
        guard !range.isEmpty else { return }
        if count + range.count > storage.count { grow(to: count + range.count) }
        let at = count
        storage.withUnsafeMutableBytes { bytes in
            (bytes.baseAddress! + at).copyMemory(from: bytes.baseAddress! + range.lowerBound, byteCount: range.count)
        }
        count += range.count
    }

    /// Calls `body` with the bytes written in `range`.
    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// The bytes written from `start` on, as an array of exactly that many: the storage itself,
    /// those bytes moved to its front, not a copy. The builder is empty afterwards.
    mutating func take(from start: Int = 0) -> [UInt8] {
        var bytes = storage
        storage = []
        let kept = count - start
        if start > 0 {
            bytes.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: kept) }
        }
        bytes.removeSubrange(kept...)
        count = 0
        return bytes
    }

    private mutating func grow(to needed: Int) {
        var grown = [UInt8](repeating: 0, count: Swift.max(needed, count * 2, 64))
        if count > 0 {
            let used = count
            grown.withUnsafeMutableBytes { out in
                storage.withUnsafeBytes { out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: used) }
            }
        }
        storage = grown
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

    /// Appends a non-negative integer in decimal, written in place, two digits at a time: the
    /// numbers of a head (status, Content-Length, Retry-After) cost no copy and no temporary.
    mutating func append(decimal value: Int) {
        var n = UInt(Swift.max(value, 0))
        let count = Self.digitCount(n)
        guard makeRoom(count) else { return }
        let out = (space.iov_base! + used).assumingMemoryBound(to: UInt8.self)
        let pairs = Self.digitPairs.utf8Start
        var i = count
        while n >= 100 {
            let pair = Int(n % 100) &* 2
            n /= 100
            i -= 2
            out[i] = pairs[pair]
            out[i + 1] = pairs[pair + 1]
        }
        if n >= 10 {
            out[i - 2] = pairs[Int(n) &* 2]
            out[i - 1] = pairs[Int(n) &* 2 + 1]
        } else {
            out[i - 1] = UInt8(truncatingIfNeeded: n) &+ 0x30
        }
        used += count
    }

    /// "00", "01", ... "99" in a row.
    private static let digitPairs: StaticString = """
        00010203040506070809101112131415161718192021222324252627282930313233343536373839\
        40414243444546474849505152535455565758596061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899
        """

    @inline(__always)
    private static func digitCount(_ n: UInt) -> Int {
        if n < 10 { return 1 }
        if n < 100 { return 2 }
        if n < 1000 { return 3 }
        if n < 10_000 { return 4 }
        var count = 5
        var rest = n / 100_000
        while rest > 0 {
            rest /= 10
            count += 1
        }
        return count
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        guard makeRoom(1) else { return }
        space.iov_base!.storeBytes(of: byte, toByteOffset: used, as: UInt8.self)
        used += 1
    }
}
