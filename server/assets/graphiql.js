// Starts GraphiQL against this server: HTTP on ./graphql, subscriptions on
// ws(s)://<host>/graphql (graphql-transport-ws). The Headers tab's
// headers go with HTTP requests and, as the connection_init payload, with
// subscriptions, so {"Authorization": "Bearer <token>"} works for both.
(function () {
  'use strict';

  var url = new URL('graphql', window.location.href);
  var wsUrl = new URL(url.href);
  wsUrl.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';

  var defaultQuery = [
    '# CodeCrafter GraphQL API',
    '#',
    '# Sign in with the login or register mutation,',
    '# then put the access token in the Headers tab:',
    '#',
    '#   { "Authorization": "Bearer <accessToken>" }',
    '#',
    '# Subscriptions (over a WebSocket) send it too.',
    '',
    'query Languages {',
    '  languages {',
    '    language',
    '    name',
    '    version',
    '  }',
    '}',
    ''
  ].join('\n');

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(React.createElement(GraphiQL, {
    fetcher: GraphiQL.createFetcher({ url: url.href, subscriptionUrl: wsUrl.href }),
    defaultQuery: defaultQuery,
    defaultEditorToolsVisibility: 'headers',
    // Tokens stay out of localStorage.
    shouldPersistHeaders: false
  }));
})();
