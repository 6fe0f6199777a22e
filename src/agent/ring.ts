/** A bounded list of the most recent items, newest first. */
export class Ring<T> {
  private items: T[] = [];
  constructor(private readonly capacity: number) {}
  push(item: T): void {
    this.items.unshift(item);
    if (this.items.length > this.capacity) this.items.length = this.capacity;
  }
  list(): T[] {
    return [...this.items];
  }
}
