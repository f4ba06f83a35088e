import Testing
@testable import BreakwaterCore
@Test func versionIsSet() { #expect(!Breakwater.version.isEmpty) }
