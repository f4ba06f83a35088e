@testable import BreakwaterServer
import CLibevent
import Testing

/// EvbufferWriter writes heads straight into an evbuffer's reserved space; when a head outgrows
/// the reservation it commits what it has and reserves more. The bytes must come out the same as
/// when appended to an array, whatever the reservation.
@Suite struct ByteWritingTests {
    private static func write(_ sink: inout some ByteSink, seed: Int) {
        var state = UInt64(truncatingIfNeeded: seed) &+ 0x9E37_79B9_7F4A_7C15
        for i in 0..<600 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            switch (state >> 33) % 5 {
            case 0: sink.append(ascii: "Content-Length: ")
            case 1: sink.append(decimal: Int(state >> 40))
            case 2: sink.append(UInt8(truncatingIfNeeded: i))
            case 3: sink.append(bytes: Array(repeating: UInt8(ascii: "x"), count: Int(state >> 52) % 3000)[...])
            default: sink.append(digits: i % 1000, width: 3)
            }
        }
    }

    @Test(arguments: [1, 16, 512, 1 << 20])
    func theWriterProducesWhatAnArrayGets(reserving size: Int) throws {
        var expected: [UInt8] = []
        Self.write(&expected, seed: size)
        let buffer = try #require(evbuffer_new())
        defer { evbuffer_free(buffer) }
        evbuffer_add(buffer, "before", 6)
        EvbufferWriter.write(into: buffer, reserving: size) { Self.write(&$0, seed: size) }
        let length = evbuffer_get_length(buffer)
        #expect(length == 6 + expected.count)
        let written = [UInt8](unsafeUninitializedCapacity: length) { out, count in
            count = Int(evbuffer_remove(buffer, out.baseAddress, length))
        }
        #expect(Array(written.prefix(6)) == Array("before".utf8))
        #expect(Array(written.dropFirst(6)) == expected)
    }

    /// Numbers are written in place by the writer: every digit count, and the edges.
    /// ByteBuilder keeps its array at capacity and counts what it used: whatever it started
    /// with, it must hand over exactly what an array that was appended to holds.
    @Test(arguments: [0, 1, 64, 1 << 16])
    func theBuilderProducesWhatAnArrayGets(capacity: Int) {
        var expected: [UInt8] = []
        Self.write(&expected, seed: capacity)
        var builder = ByteBuilder(capacity: capacity)
        Self.write(&builder, seed: capacity)
        #expect(builder.count == expected.count)
        #expect(builder.withBytes(0..<builder.count) { Array($0) } == expected)
        let taken = builder.take()
        #expect(taken == expected)
        #expect(builder.isEmpty)
    }

    /// The moves an HTTP/2 request head makes: values written first, copied after themselves,
    /// the head then taken from where it starts; collections appended whether contiguous or not.
    @Test func theBuilderCopiesWithinAndTakesFromAnOffset() {
        var builder = ByteBuilder(capacity: 4)
        builder.append(contentsOf: "GET".utf8)
        builder.append(contentsOf: Array("/path".utf8))
        let start = builder.count
        builder.append(copyOf: 0..<3)
        builder.append(0x20)
        builder.append(copyOf: 3..<8)
        builder.append(contentsOf: " HTTP/1.1".utf8.lazy.map { $0 })
        builder.lowercaseASCII(start + 10..<start + 14)
        #expect(builder.take(from: start) == Array("GET /path http/1.1".utf8))
        builder.append(ascii: "x")
        builder.removeAll()
        builder.append(ascii: "yz")
        #expect(builder.take() == Array("yz".utf8))
    }

    @Test func decimalsComeOutAsAnArrayWritesThem() throws {
        var values = [0, 9, 10, 99, 100, 999, 1000, 65_535, 1 << 31, Int.max]
        var power = 1
        for _ in 0..<18 {
            power *= 10
            values += [power - 1, power, power + 1]
        }
        for value in values {
            let buffer = try #require(evbuffer_new())
            defer { evbuffer_free(buffer) }
            EvbufferWriter.write(into: buffer, reserving: 1) { $0.append(decimal: value) }
            let length = evbuffer_get_length(buffer)
            let written = [UInt8](unsafeUninitializedCapacity: length) { out, count in
                count = Int(evbuffer_remove(buffer, out.baseAddress, length))
            }
            #expect(String(decoding: written, as: UTF8.self) == String(value))
        }
    }

    @Test func digitsArePaddedToTheWidth() {
        var out: [UInt8] = []
        out.append(digits: 7, width: 3)
        out.append(ascii: " ")
        out.append(digits: 2026, width: 4)
        out.append(ascii: " ")
        out.append(digits: 12345, width: 2)
        out.append(ascii: " ")
        out.append(digits: 0, width: 2)
        #expect(String(decoding: out, as: UTF8.self) == "007 2026 12345 00")
    }
}
