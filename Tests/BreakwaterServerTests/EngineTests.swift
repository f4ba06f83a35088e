import Testing
@testable import BreakwaterServer
@Test func libeventLoads() { #expect(Engine.libeventVersion().hasPrefix("2.")) }
