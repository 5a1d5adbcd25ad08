import CLibBPF

extension ServiceRef {
    var frontendKey: ctctl_fe_key {
        var k = ctctl_fe_key()
        withUnsafeMutableBytes(of: &k) { raw in vip.address.store(to: raw.baseAddress!) }
        k.port = vip.port.bigEndian
        k.proto = proto.number
        k.family = vip.address.family.rawValue
        return k
    }

    init(_ k: ctctl_fe_key) {
        let a = withUnsafeBytes(of: k) { IPAddress(raw: $0.baseAddress!, family: k.family) }
        self.init(vip: Endpoint(address: a, port: UInt16(bigEndian: k.port)), proto: IPProto(k.proto))
    }
}

extension Endpoint {
    public var backendValue: ctctl_be_value {
        var v = ctctl_be_value()
        withUnsafeMutableBytes(of: &v) { raw in address.store(to: raw.baseAddress!) }
        v.port = port.bigEndian
        v.family = address.family.rawValue
        return v
    }

    init(_ v: ctctl_be_value) {
        let a = withUnsafeBytes(of: v) { IPAddress(raw: $0.baseAddress!, family: v.family) }
        self.init(address: a, port: UInt16(bigEndian: v.port))
    }
}
