import CLibevent
public enum Engine { public static func libeventVersion() -> String { String(cString: event_get_version()) } }
