// multicast-dns ships no types; mdns-socket.ts describes the parts it uses (MulticastDns) and casts.
declare module 'multicast-dns' {
  const factory: (opts?: Record<string, unknown>) => unknown;
  export default factory;
}
