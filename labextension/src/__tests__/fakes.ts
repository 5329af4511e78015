/** In-memory stand-ins for ISharedCell / ISharedNotebook, shared by the specs. */
import { ICellLike, INotebookLike, JSONish } from '../cells';

export class FakeCell implements ICellLike {
  constructor(
    readonly id: string,
    public source = '',
    public metadata: JSONish = {}
  ) {}
  history: string[] = [];
  getSource(): string {
    return this.source;
  }
  setSource(value: string): void {
    this.history.push(this.source);
    this.source = value;
  }
  getMetadata(key: string): unknown {
    return this.metadata[key];
  }
  setMetadata(key: string, value: any): void {
    this.metadata = { ...this.metadata, [key]: value };
  }
}

export class FakeNotebook implements INotebookLike {
  constructor(public cells: FakeCell[]) {}
  transactions = 0;
  insertCell(
    index: number,
    cell: { cell_type: 'code'; source: string; metadata: JSONish }
  ): FakeCell {
    const created = new FakeCell(`new${index}`, cell.source, cell.metadata);
    this.cells.splice(index, 0, created);
    return created;
  }
  transact(f: () => void): void {
    this.transactions++;
    f();
  }
}

